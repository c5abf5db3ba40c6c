"""Tests for digits/serve.py (`digits serve`) and digits/serve_bench.py (`digits bench --serve`).

Unit tests ask ``Site`` directly; the integration tests talk HTTP to a server in this process
(limits, slow clients) and to a `digits serve` process on a free loopback port (every status,
Ctrl-C, the benchmark). The model is a tiny one built here whose answer is worked out by hand:
probability 27/36 = 0.75 for digit 3 and 1/36 for each other digit, whatever the picture.
"""

import argparse
import base64
import errno
import http.client
import io
import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CONSTANT_ANSWER,
    DIGITS,
    PROJECT_ROOT,
    band_model,
    band_probabilities,
    constant_model,
    start_serve,
)
from PIL import Image

from digits import serve
from digits.errors import DigitsError
from digits.images import decode_grayscale, mnist_frame
from digits.serve import Classifier, Site, describe_model, locked_md5, parse_label, web_files
from digits.serve_bench import drawn_seven, percentile, server_url

ANSWER = CONSTANT_ANSWER
CONFIDENCE = 27 / 36


def always_three():
    return constant_model(ANSWER)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(always_three())


def png(image: Image.Image) -> bytes:
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    return stream.getvalue()


BLANK = png(Image.new("L", (60, 60), 255))
# 5000 x 5000 white: a few kB that would decode to 25 MP, over MAX_PICTURE_PIXELS
HUGE = png(Image.new("L", (5000, 5000), 255))


def fake_project(root: Path, model: Path) -> Path:
    """A project directory with dvc.lock recording ``model``'s md5, metrics and one figure."""
    import hashlib

    md5 = hashlib.md5(model.read_bytes()).hexdigest()
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  train:\n    outs:\n"
        f"    - path: data/model.keras\n      md5: {md5}\n"
    )
    (root / "metrics").mkdir()
    metrics = {"accuracy": 0.9888, "loss": 0.1, "errors": 112, "per_class_accuracy": {"0": 1.0}}
    (root / "metrics/metrics.json").write_text(json.dumps(metrics))
    (root / "plots/images").mkdir(parents=True)
    (root / "plots/images/confusion_matrix.png").write_bytes(BLANK)
    return root


@pytest.fixture
def site(tmp_path, classifier, model_path) -> Site:
    project = fake_project(tmp_path / "project", model_path)
    files = web_files(serve.resources.files("digits") / "web", project / "plots/images")
    info = describe_model(model_path, project)
    return Site(classifier, files, info, tmp_path / "own")


# --- unit: what each route answers


def test_a_drawing_gets_the_digit_its_probabilities_and_the_frame_the_model_saw(site):
    response = site.post("/api/predict", "", drawn_seven())

    answer = json.loads(response.body)
    assert response.status == 200
    assert answer["digit"] == ANSWER
    assert answer["probabilities"][ANSWER] == pytest.approx(CONFIDENCE, abs=1e-6)
    assert sum(answer["probabilities"]) == pytest.approx(1, abs=1e-5)
    frame = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["frame"]))))
    expected = mnist_frame(decode_grayscale(io.BytesIO(drawn_seven()), "seven"))
    np.testing.assert_array_equal(frame, expected)  # what `digits predict` feeds the model


def test_the_model_gets_the_frame_it_answers_with_scaled_as_in_training():
    """A model whose answer depends on every pixel: its probabilities are those of the frame
    the answer holds, scaled to 0-1, and of nothing else."""
    site = Site(Classifier(band_model()), {}, {}, None)
    answer = json.loads(site.post("/api/predict", "", drawn_seven()).body)

    frame = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["frame"]))))
    expected = band_probabilities(frame)
    assert expected.max() - expected.min() > 0.1  # the bands differ
    assert answer["probabilities"] == pytest.approx(expected.tolist(), abs=2e-6)
    assert answer["digit"] == expected.argmax()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"garbage", 400, "not an image"),
        (b"", 400, "not an image"),
        (BLANK, 400, "no digit found"),
        (drawn_seven()[:300], 400, "cannot decode"),
        (HUGE, 413, "25,000,000 pixels"),
    ],
)
def test_a_body_that_is_no_usable_picture_gets_a_json_error(site, body, status, message):
    response = site.post("/api/predict", "", body)

    assert response.status == status
    assert message in json.loads(response.body)["error"]


def test_a_correction_is_filed_under_its_label(site, tmp_path):
    response = site.post("/api/own", "label=7", drawn_seven())

    answer = json.loads(response.body)
    assert response.status == 201
    assert answer["label"] == 7
    assert Path(answer["path"]).read_bytes() == drawn_seven()
    assert Path(answer["path"]).parent == tmp_path / "own" / "7"


@pytest.mark.parametrize(
    ("query", "body", "status"),
    [("label=x", drawn_seven(), 400), ("", drawn_seven(), 400), ("label=7", BLANK, 400)],
)
def test_a_correction_without_a_digit_label_or_picture_files_nothing(
    site, tmp_path, query, body, status
):
    response = site.post("/api/own", query, body)

    assert response.status == status
    assert "error" in json.loads(response.body)
    assert not (tmp_path / "own").exists()


@pytest.mark.parametrize(("query", "label"), [("label=0", 0), ("label=9", 9), ("x=1&label=5", 5)])
def test_parse_label_reads_one_digit(query, label):
    assert parse_label(query) == label


@pytest.mark.parametrize("query", ["label=10", "label=-1", "label=7&label=8", "label= 7", ""])
def test_parse_label_refuses_anything_else(query):
    with pytest.raises(DigitsError, match="label: expected one digit"):
        parse_label(query)


def test_only_its_own_files_are_served(site):
    assert site.allowed_methods("/") == ("GET", "HEAD")
    assert site.get("/").content_type.startswith("text/html")
    assert b"/static/app.js" in site.get("/").body
    assert site.get("/static/app.js").content_type.startswith("text/javascript")
    assert site.get("/plots/confusion_matrix.png").body == BLANK
    assert site.allowed_methods("/api/predict") == ("POST",)
    for path in ("/static/", "/static", "/static/../serve.py", "/plots/", "/../dvc.lock", ""):
        assert site.allowed_methods(path) == ()


def test_the_model_is_described_by_its_md5_beside_dvc_lock_and_git(site, model_path, tmp_path):
    info = json.loads(site.get("/api/model").body)

    assert info["model"]["matches_dvc_lock"] is True
    assert info["model"]["md5"] == info["model"]["dvc_lock_md5"]
    assert info["metrics"]["accuracy"] == 0.9888
    assert info["plots"] == {"confusion_matrix": "/plots/confusion_matrix.png"}
    assert info["git"] == {"commit": None, "dirty": None}  # the fake project is no checkout


def test_a_model_other_than_dvc_locks_is_flagged(tmp_path, model_path):
    project = fake_project(tmp_path, model_path)
    other = tmp_path / "other.keras"
    other.write_bytes(model_path.read_bytes() + b"\0")

    info = describe_model(other, project)

    assert info["model"]["matches_dvc_lock"] is False
    assert info["model"]["dvc_lock_md5"] == locked_md5(
        project / "dvc.lock", Path("data/model.keras")
    )


def test_locked_md5_of_a_missing_lock_or_output_is_none(tmp_path):
    assert locked_md5(tmp_path / "dvc.lock", Path("data/model.keras")) is None
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert locked_md5(tmp_path / "dvc.lock", Path("data/model.keras")) is None


def test_a_damaged_lock_or_metrics_file_is_named_not_a_traceback(tmp_path, model_path):
    project = fake_project(tmp_path, model_path)
    (project / "metrics/metrics.json").write_text('<<<<<<< HEAD\n{"accuracy": 0.98}\n')
    with pytest.raises(DigitsError, match=r"metrics\.json: not the evaluate stage's JSON"):
        describe_model(model_path, project)
    (project / "dvc.lock").write_text("schema: '2.0'\nstages:\n- train\n")
    with pytest.raises(DigitsError, match=r"dvc\.lock: not what DVC writes"):
        locked_md5(project / "dvc.lock", Path("data/model.keras"))


def test_git_state_names_this_checkouts_commit():
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert serve.git_state(PROJECT_ROOT)["commit"] == head


@pytest.mark.parametrize("text", ["-1", "65536", "http", ""])
def test_a_port_outside_0_to_65535_is_refused_by_the_option(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a port number, 0-65535"):
        serve.port_number(text)


def test_a_port_that_needs_privileges_says_so(site, monkeypatch):
    def refused(*args):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(serve, "make_server", refused)
    with pytest.raises(DigitsError, match=r"ports below 1024 need privileges: choose --port 1024"):
        serve.listen(site, "127.0.0.1", 80)


def test_a_host_that_is_no_address_here_names_the_host_option(site):
    with pytest.raises(DigitsError, match=r"\(.*\); --host must be an address or name of this"):
        serve.listen(site, "192.0.2.1", 0)  # TEST-NET-1: no machine's address, no DNS asked


@pytest.mark.parametrize(
    "url",
    [
        "localhost:8000",
        "not a url",
        "http://127.0.0.1:99999",
        "https://127.0.0.1:80",
        "",
        "http://127.0.0.1",
        "http://127.0.0.1:8000/api/predict",
        "http://[::1",
    ],
)
def test_a_server_address_that_is_not_http_host_port_is_refused_by_the_option(url):
    with pytest.raises(argparse.ArgumentTypeError, match="expected the address `digits serve`"):
        server_url(url)


def test_percentile_is_a_value_that_occurred():
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 95) == 19
    assert percentile(values, 50) == 10
    assert percentile([5.0], 95) == 5


# --- integration: HTTP to a server in this process


@pytest.fixture
def server(site, monkeypatch):
    """A server for ``site`` on a free loopback port, in a thread; its (host, port)."""
    monkeypatch.setattr(serve, "REQUEST_SECONDS", 1.0)
    monkeypatch.setattr(serve.Handler, "timeout", 2.0)
    monkeypatch.setattr(serve, "MAX_CONNECTIONS", 3)
    running = serve.make_server(site, "127.0.0.1", 0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running.server_address[:2]
    running.shutdown()
    running.server_close()


def raw_exchange(address, data: bytes, wait_s: float = 5) -> bytes:
    """Send ``data`` on a new connection and read the answer until the server closes it."""
    with socket.create_connection(address, timeout=wait_s) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_json(raw: bytes) -> tuple[int, dict, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), head.decode()


def request(address, method: str, path: str, body: bytes | None = None, headers=None):
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


@pytest.mark.integration
def test_limits_are_answered_with_json_and_the_server_keeps_serving(server):
    status, body, _ = request(
        server, "POST", "/api/predict", b"x" * 10, {"Content-Length": "9000000"}
    )
    assert (status, "over 8,000,000" in json.loads(body)["error"]) == (413, True)

    status, answer, _ = status_and_json(
        raw_exchange(server, b"POST /api/predict HTTP/1.0\r\n\r\n")
    )
    assert status == 411 and "Content-Length" in answer["error"]

    for length in (b"ten", b"\xb2"):  # "²" to Python, a digit to str.isdigit
        raw = raw_exchange(
            server, b"POST /api/predict HTTP/1.0\r\nContent-Length: %s\r\n\r\n" % length
        )
        assert status_and_json(raw)[0] == 400

    status, answer, head = status_and_json(raw_exchange(server, b"BREW / HTTP/1.0\r\n\r\n"))
    assert status == 405 and "Allow: GET, HEAD" in head

    status, answer, _ = status_and_json(
        raw_exchange(server, b"GET /../../etc/passwd HTTP/1.0\r\n\r\n")
    )
    assert status == 404

    status, answer, _ = status_and_json(raw_exchange(server, b"nonsense\r\n\r\n"))
    assert status == 400 and "error" in answer

    status, body, headers = request(server, "GET", "/")
    assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.integration
def test_a_body_over_the_limit_sent_whole_before_reading_gets_its_413(server, monkeypatch):
    """As urllib and most scripts send: the whole body, then read. Unread, it would reset the
    connection before the answer arrived."""
    monkeypatch.setattr(serve, "MAX_BODY_BYTES", 100_000)
    body = b"x" * 3_000_000
    head = b"POST /api/predict HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body)
    status, answer, _ = status_and_json(raw_exchange(server, head + body))
    assert status == 413 and "over 100,000" in answer["error"]


@pytest.mark.integration
def test_headers_cut_off_at_the_deadline_get_408(server):
    with socket.create_connection(server, timeout=10) as connection:
        connection.sendall(b"POST /api/predict HTTP/1.0\r\nContent-Le")
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.0 408")


@pytest.mark.integration
def test_a_client_that_sends_slowly_is_cut_off_at_the_deadline(server):
    started = time.perf_counter()
    with socket.create_connection(server, timeout=10) as connection:
        connection.sendall(b"POST /api/predict HTTP/1.0\r\nContent-Length: 100\r\n\r\n")
        try:
            for _ in range(50):  # a byte every 0.2 s: each read is quick, the whole is not
                connection.sendall(b"x")
                time.sleep(0.2)
        except OSError:
            pass
        answer = connection.recv(65536)
    elapsed = time.perf_counter() - started

    # The deadline (1 s here) bounds the whole request; without it, the 10 s the bytes take.
    assert 0.9 < elapsed < 8
    assert answer.startswith(b"HTTP/1.0 408")
    assert request(server, "GET", "/api/model")[0] == 200


@pytest.mark.integration
def test_connections_beyond_the_limit_are_refused_not_queued(server):
    idle = [socket.create_connection(server, timeout=5) for _ in range(3)]  # the limit, here
    try:
        time.sleep(0.2)
        status, answer, _ = status_and_json(raw_exchange(server, b"GET / HTTP/1.0\r\n\r\n"))
        assert status == 503 and "too many connections" in answer["error"]
    finally:
        for connection in idle:
            connection.close()
    time.sleep(1.5)  # the idle ones are cut off by the deadline and free their slots
    assert request(server, "GET", "/")[0] == 200


def rotated_seven(degrees: int) -> bytes:
    stream = io.BytesIO()
    picture = Image.open(io.BytesIO(drawn_seven())).rotate(degrees, fillcolor=255)
    picture.save(stream, format="PNG")
    return stream.getvalue()


@pytest.mark.integration
def test_concurrent_predictions_each_answer_their_own_picture(server):
    """Each client's picture differs, and each answer carries the frame of its own picture:
    answers mixed up between clients would show."""
    pictures = {degrees: rotated_seven(degrees) for degrees in range(0, 160, 10)}
    results = {}

    def client(share: list[int]):  # two at once: under this fixture's limit of three connections
        for degrees in share:
            status, body, _ = request(server, "POST", "/api/predict", pictures[degrees])
            results[degrees] = status, json.loads(body)

    threads = [threading.Thread(target=client, args=(list(pictures)[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected = {
        degrees: mnist_frame(decode_grayscale(io.BytesIO(picture), "p"))
        for degrees, picture in pictures.items()
    }
    assert len({frame.tobytes() for frame in expected.values()}) == len(pictures)  # all differ
    assert sorted(results) == sorted(pictures)
    for degrees, (status, answer) in results.items():
        assert (status, answer["digit"]) == (200, ANSWER)
        frame = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["frame"]))))
        np.testing.assert_array_equal(frame, expected[degrees], err_msg=f"{degrees} degrees")


# --- integration: the `digits serve` command


@pytest.fixture
def served(model_path, tmp_path):
    """`digits serve --port 0` on the tiny model, from the project root: (url, process)."""
    process = start_serve("--port", "0", "--model", str(model_path), "--own-dir", str(tmp_path))
    try:
        line = process.stdout.readline()
        found = re.search(r"at (http://127\.0\.0\.1:(\d+))/", line)
        assert found, f"no address in {line!r}"
        yield found[1], process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop(process, number=signal.SIGINT) -> tuple[int, str, str]:
    process.send_signal(number)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


@pytest.mark.integration
def test_the_command_answers_every_status_and_stops_cleanly_on_ctrl_c(served, tmp_path):
    url, process = served
    address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))

    assert request(address, "GET", "/")[0] == 200
    status, body, _ = request(address, "POST", "/api/predict", drawn_seven())
    assert (status, json.loads(body)["digit"]) == (200, ANSWER)
    assert request(address, "GET", "/api/model")[0] == 200
    status, body, _ = request(address, "POST", "/api/own?label=7", drawn_seven())
    assert status == 201 and Path(json.loads(body)["path"]).parent == tmp_path / "7"
    assert request(address, "POST", "/api/predict", b"garbage")[0] == 400
    assert request(address, "POST", "/api/predict", BLANK)[0] == 400
    assert request(address, "POST", "/api/predict", HUGE)[0] == 413
    status, body, _ = request(address, "POST", "/api/predict", b"", {"Content-Length": "9000000"})
    assert status == 413
    assert request(address, "GET", "/nowhere")[0] == 404
    assert request(address, "GET", "/api/predict")[0] == 405
    assert request(address, "DELETE", "/")[0] == 405
    for _status, body, _ in [
        request(address, "GET", "/nowhere"),
        request(address, "POST", "/api/predict", b"x"),
    ]:
        assert set(json.loads(body)) == {"error"} and b"Traceback" not in body
    assert request(address, "POST", "/api/predict", drawn_seven())[0] == 200  # still serving

    code, out, err = stop(process)
    assert code == 0
    assert out.splitlines()[-1] == "stopped"
    assert "Traceback" not in err


@pytest.mark.integration
def test_the_command_stops_cleanly_on_sigterm(served):  # kill, systemd, docker stop
    url, process = served
    assert request(("127.0.0.1", int(url.rsplit(":", 1)[1])), "GET", "/")[0] == 200

    code, out, err = stop(process, signal.SIGTERM)

    assert code == 0
    assert out.splitlines()[-1] == "stopped"
    assert "Traceback" not in err


@pytest.mark.integration
def test_the_benchmark_reports_latency_and_no_errors_with_eight_clients(served):
    url, process = served

    result = subprocess.run(
        [DIGITS, "bench", "--serve", url, "--clients", "1", "8", "--requests", "16"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert [summary[n]["requests"] for n in ("1", "8")] == [16, 16]
    assert [summary[n]["errors"] for n in ("1", "8")] == [0, 0]
    assert 0 < summary["1"]["p50_ms"] <= summary["1"]["p95_ms"]
    assert re.search(r"8 clients: 16 requests, 0 errors, [\d.]+ requests/s, p50", result.stdout)


@pytest.mark.integration
def test_all_interfaces_are_served_only_with_a_warning(model_path, tmp_path):
    process = start_serve("--host", "0.0.0.0", "--port", "0", "--model", str(model_path))
    try:
        warning = process.stdout.readline()
        address = process.stdout.readline()
    finally:
        stop(process)
    assert warning.startswith("listening on every network interface: anyone who can reach")
    assert "at http://127.0.0.1:" in address


@pytest.mark.integration
def test_a_port_in_use_is_one_error_line(model_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [DIGITS, "serve", "--port", str(port), "--model", str(model_path)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot listen on 127.0.0.1:{port}")
    )


@pytest.mark.parametrize("why", ["a file in the way", "a read-only disk"])
def test_a_correction_the_server_cannot_write_is_its_error_not_the_clients(
    site, tmp_path, monkeypatch, why
):
    if why == "a file in the way":
        (tmp_path / "own").write_text("a file where the directory should be")
    else:

        def read_only(path, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(path))

        monkeypatch.setattr(Path, "mkdir", read_only)

    response = site.post("/api/own", "label=7", drawn_seven())

    assert response.status == 500
    assert "own/7" in json.loads(response.body)["error"]
