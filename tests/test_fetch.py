"""Fetching from directories and from a local HTTP server on 127.0.0.1, never the network."""

import gzip
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import load_project_params, md5_hex

from digits.fetch import (
    DownloadError,
    SourceError,
    candidate_sources,
    fetch_verified,
    gunzip_verified,
)
from digits.params import SourceFile

CONTENT = b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03"
GOOD = SourceFile(
    name=load_project_params()["download"]["files"]["train_labels"]["name"], md5=md5_hex(CONTENT)
)


class Mirror:
    """A local HTTP mirror: ``routes`` maps a path to (status, body); ``stall_s`` delays answers;
    ``truncate`` announces more bytes than it sends, ``content_length`` announces that text.
    ``hits`` counts requests per path."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.stall_s = 0.0
        self.truncate = False
        self.content_length: str | None = None  # sent instead of the real length when set
        self.hits: dict[str, int] = {}
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                mirror.hits[self.path] = mirror.hits.get(self.path, 0) + 1
                time.sleep(mirror.stall_s)
                status, body = mirror.routes.get(self.path, (404, b"not here"))
                self.send_response(status)
                length = mirror.content_length or str(len(body) + 100 * mirror.truncate)
                self.send_header("Content-Length", length)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/mnist/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, name: str, body: bytes, status: int = 200) -> None:
        self.routes[f"/mnist/{name}"] = (status, body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    server = Mirror()
    yield server
    server.close()


@pytest.fixture
def second_mirror():
    server = Mirror()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch):
    monkeypatch.setattr("digits.fetch.RETRY_PAUSE_S", 0.0)


def fetch(sources, file=GOOD, retries=0, timeout_s=5.0):
    return fetch_verified(sources, file, timeout_s=timeout_s, retries=retries)


def test_fetches_and_verifies_over_http(mirror):
    mirror.serve(GOOD.name, gzip.compress(CONTENT))
    assert fetch([mirror.url]) == CONTENT


def test_fetches_from_a_directory(tmp_path):
    (tmp_path / GOOD.name).write_bytes(gzip.compress(CONTENT))
    assert fetch([str(tmp_path)]) == CONTENT


def test_checksum_mismatch_falls_back_to_the_next_mirror(mirror, second_mirror):
    mirror.serve(GOOD.name, gzip.compress(CONTENT + b"\x00"))
    second_mirror.serve(GOOD.name, gzip.compress(CONTENT))
    assert fetch([mirror.url, second_mirror.url]) == CONTENT


def test_404_falls_back_to_the_next_mirror_without_retrying(mirror, second_mirror):
    second_mirror.serve(GOOD.name, gzip.compress(CONTENT))
    assert fetch([mirror.url, second_mirror.url], retries=2) == CONTENT
    assert mirror.hits == {f"/mnist/{GOOD.name}": 1}


def test_server_error_is_retried(mirror):
    mirror.serve(GOOD.name, b"", status=503)
    with pytest.raises(DownloadError, match="HTTP 503"):
        fetch([mirror.url], retries=2)
    assert mirror.hits[f"/mnist/{GOOD.name}"] == 3


def test_timeout_is_retried_then_falls_back(mirror, second_mirror):
    mirror.serve(GOOD.name, gzip.compress(CONTENT))
    mirror.stall_s = 1.0
    second_mirror.serve(GOOD.name, gzip.compress(CONTENT))
    assert fetch([mirror.url, second_mirror.url], retries=1, timeout_s=0.2) == CONTENT
    assert mirror.hits[f"/mnist/{GOOD.name}"] == 2


def test_connection_closed_midway_never_counts_as_fetched(mirror):
    mirror.serve(GOOD.name, gzip.compress(CONTENT))
    mirror.truncate = True
    with pytest.raises(DownloadError, match="connection closed after|IncompleteRead|incomplete"):
        fetch([mirror.url])


def test_all_sources_failing_lists_each_with_its_reason(mirror, tmp_path):
    mirror.serve(GOOD.name, b"not gzip at all")
    with pytest.raises(DownloadError) as caught:
        fetch([str(tmp_path), mirror.url])
    message = str(caught.value)
    assert f"could not fetch {GOOD.name} from any source" in message
    assert f"{tmp_path / GOOD.name}: No such file or directory" in message
    assert f"{mirror.url}{GOOD.name}: not a complete gzip file" in message


def test_gunzip_verified_rejects_truncated_gzip():
    with pytest.raises(SourceError, match="here: not a complete gzip file"):
        gunzip_verified(gzip.compress(CONTENT)[:-6], GOOD.md5, "here")


def test_gunzip_verified_names_both_checksums():
    wrong = gzip.compress(b"other bytes")
    with pytest.raises(
        SourceError,
        match=f"MD5 of decompressed data is {md5_hex(b'other bytes')}, expected {GOOD.md5}",
    ):
        gunzip_verified(wrong, GOOD.md5, "here")


def test_environment_mirror_comes_first(tmp_path):
    assert candidate_sources(str(tmp_path), ["https://a/"]) == [str(tmp_path), "https://a/"]
    assert candidate_sources(None, ["https://a/"]) == ["https://a/"]


def test_environment_mirror_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(DownloadError, match="MNIST_MIRROR=.*neither an existing directory"):
        candidate_sources(str(tmp_path / "nowhere"), [])


def test_environment_mirror_over_plain_http_to_another_host_is_refused():
    with pytest.raises(DownloadError, match="MNIST_MIRROR: expected an https:// URL"):
        candidate_sources("http://mirror.example.com/mnist/", [])


@pytest.mark.parametrize("url", ["http://[::1", "https://[::1/", "https://a:99999/"])
def test_malformed_environment_mirror_url_is_one_error_naming_the_variable(url):
    with pytest.raises(DownloadError) as caught:
        candidate_sources(url, [])
    assert str(caught.value) == (
        f"environment: MNIST_MIRROR: not a valid URL ({_url_error(url)}), got {url!r}; "
        "fix it, or `unset MNIST_MIRROR` to use the mirrors in params.yaml"
    )


def _url_error(url: str) -> str:
    return "Port out of range 0-65535" if url.endswith(":99999/") else "Invalid IPv6 URL"


def test_environment_mirror_path_too_long_is_one_error_naming_the_variable():
    with pytest.raises(DownloadError, match=r"MNIST_MIRROR='x{5000}': .*unset MNIST_MIRROR"):
        candidate_sources("x" * 5000, [])


def test_fifo_in_a_mirror_directory_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / GOOD.name)
    with pytest.raises(DownloadError, match=f"{GOOD.name}: not a regular file"):
        fetch([str(tmp_path)])


def test_directory_in_place_of_a_file_is_refused(tmp_path):
    (tmp_path / GOOD.name).mkdir()
    with pytest.raises(DownloadError, match=f"{GOOD.name}: not a regular file"):
        fetch([str(tmp_path)])


def test_oversized_file_in_a_mirror_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("digits.fetch.MAX_DOWNLOAD_BYTES", 10)
    (tmp_path / GOOD.name).write_bytes(gzip.compress(CONTENT))
    with pytest.raises(DownloadError, match="larger than 10 bytes, not an MNIST file"):
        fetch([str(tmp_path)])


def test_gzip_bomb_stops_at_the_size_cap(monkeypatch):
    monkeypatch.setattr("digits.fetch.MAX_FILE_BYTES", 1000)
    with pytest.raises(SourceError, match="here: decompresses to more than 1000 bytes"):
        gunzip_verified(gzip.compress(bytes(10**6)), GOOD.md5, "here")


def test_gunzip_verified_reads_every_gzip_member():
    raw = gzip.compress(CONTENT[:5]) + gzip.compress(CONTENT[5:])
    assert gunzip_verified(raw, GOOD.md5, "here") == CONTENT


@pytest.mark.parametrize("length", ["abc", "-5", "9" * 5000])
def test_unreadable_content_length_is_ignored(mirror, length):
    mirror.serve(GOOD.name, gzip.compress(CONTENT))
    mirror.content_length = length
    assert fetch([mirror.url]) == CONTENT


def test_body_larger_than_an_mnist_file_is_refused(mirror, monkeypatch):
    monkeypatch.setattr("digits.fetch.MAX_DOWNLOAD_BYTES", 10)
    mirror.serve(GOOD.name, gzip.compress(CONTENT))
    with pytest.raises(DownloadError, match="bytes announced, more than an MNIST file"):
        fetch([mirror.url])
