"""Fetch the MNIST files from a local directory or mirrors, verified by MD5 before use.

Sources are tried in order: ``$MNIST_MIRROR`` (a directory or URL) if set, then the mirrors in
``params.yaml``. A transient failure (timeout, connection error, HTTP 5xx) is retried; any
other failure moves on to the next source. Nothing counts as fetched until the MD5 of its
decompressed bytes matches.
"""

import gzip
import hashlib
import http.client
import io
import logging
import os
import stat
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

from digits.errors import DigitsError
from digits.params import ParamsError, SourceFile, check_source_url

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
RETRY_PAUSE_S = 0.5
# MNIST's largest file is 9.9 MB gzipped, 47 MB decompressed: a source that sends more is not
# serving MNIST, and reading on would only fill memory (a gzip bomb expands 1000x).
MAX_DOWNLOAD_BYTES = 1 << 26
MAX_FILE_BYTES = 1 << 28


class DownloadError(DigitsError):
    """No source delivered a file with the expected checksum."""


class SourceError(Exception):
    """One source failed for one file; ``transient`` failures are worth retrying."""

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


def candidate_sources(env_mirror: str | None, mirrors: Sequence[str]) -> list[str]:
    """Return the sources to try in order: ``env_mirror`` (if set), then ``mirrors``."""
    if not env_mirror:
        return list(mirrors)
    fix = "fix it, or `unset MNIST_MIRROR` to use the mirrors in params.yaml"
    if env_mirror.startswith(("http://", "https://")):
        try:
            check_source_url(env_mirror, "MNIST_MIRROR", source="environment")
        except ParamsError as error:
            raise DownloadError(f"{error}; {fix}") from None
        return [env_mirror, *mirrors]
    try:
        is_directory = Path(env_mirror).is_dir()
    except (OSError, ValueError) as error:  # a name too long for the file system
        raise DownloadError(f"MNIST_MIRROR={env_mirror!r}: {error}; {fix}") from None
    if not is_directory:
        raise DownloadError(
            f"MNIST_MIRROR={env_mirror!r} is neither an existing directory nor "
            "an http(s) URL; unset it to use the mirrors in params.yaml"
        )
    return [env_mirror, *mirrors]


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def gunzip_verified(raw: bytes, expected_md5: str, where: str) -> bytes:
    """Decompress gzip ``raw`` and check the MD5 of the result; raise ``SourceError`` if not."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise SourceError(f"{where}: not a complete gzip file ({error})") from None
    if len(data) > MAX_FILE_BYTES:
        raise SourceError(f"{where}: decompresses to more than {MAX_FILE_BYTES} bytes")
    actual = md5_hex(data)
    if actual != expected_md5:
        raise SourceError(
            f"{where}: MD5 of decompressed data is {actual}, expected {expected_md5}"
        )
    return data


def fetch_verified(
    sources: Sequence[str],
    file: SourceFile,
    timeout_s: float,
    retries: int,
    progress: bool = False,
) -> bytes:
    """Return the decompressed, checksum-verified bytes of ``file`` from the first good source.

    Raises ``DownloadError`` listing every source and why it failed.
    """
    failures = []
    for source in sources:
        where = _location(source, file.name)
        for attempt in range(retries + 1):
            try:
                raw = _read_source(where, timeout_s, progress)
                return gunzip_verified(raw, file.md5, where)
            except SourceError as failure:
                last = failure
                if not failure.transient or attempt == retries:
                    break
                log.warning("%s (attempt %d of %d), retrying", failure, attempt + 1, retries + 1)
                time.sleep(RETRY_PAUSE_S * (attempt + 1))
        log.warning("%s; trying the next source", last)
        failures.append(str(last))
    listed = "\n".join(f"  - {failure}" for failure in failures) or "  (no sources configured)"
    raise DownloadError(f"could not fetch {file.name} from any source:\n{listed}")


def _location(source: str, name: str) -> str:
    if source.startswith(("http://", "https://")):
        return source.rstrip("/") + "/" + name
    return str(Path(source) / name)


def _read_source(where: str, timeout_s: float, progress: bool) -> bytes:
    if not where.startswith(("http://", "https://")):
        return _read_file(Path(where))
    try:
        with urllib.request.urlopen(where, timeout=timeout_s) as response:
            return _read_body(response, _content_length(response), where, progress)
    except urllib.error.HTTPError as error:
        raise SourceError(
            f"{where}: HTTP {error.code} {error.reason}", transient=error.code >= 500
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        # OSError: timeouts, resets and TLS errors while reading the body
        reason = getattr(error, "reason", None) or error
        raise SourceError(f"{where}: {reason}", transient=True) from None
    except ValueError as error:  # a URL that passed params' checks but not urllib's
        raise SourceError(f"{where}: {error}") from None


def _read_file(path: Path) -> bytes:
    """A mirror directory's file: regular (a FIFO would block) and no larger than MNIST's."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise SourceError(f"{path}: not a regular file")
        with open(path, "rb") as stream:
            data = stream.read(MAX_DOWNLOAD_BYTES + 1)
    except OSError as error:
        raise SourceError(f"{path}: {error.strerror or error}") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise SourceError(f"{path}: larger than {MAX_DOWNLOAD_BYTES} bytes, not an MNIST file")
    return data


def _content_length(response) -> int | None:
    """The announced body size, or None if the header is absent or not a number."""
    try:
        total = int(response.headers.get("Content-Length") or 0)
    except ValueError:
        return None
    return total if total > 0 else None


def _read_body(response, total: int | None, where: str, progress: bool) -> bytes:
    if total is not None and total > MAX_DOWNLOAD_BYTES:
        raise SourceError(f"{where}: {total} bytes announced, more than an MNIST file")
    chunks = []
    received = 0
    bar = _progress_bar(total, Path(where).name) if progress else None
    try:
        while chunk := response.read(CHUNK_BYTES):
            chunks.append(chunk)
            received += len(chunk)
            if received > MAX_DOWNLOAD_BYTES:
                raise SourceError(
                    f"{where}: more than {MAX_DOWNLOAD_BYTES} bytes, not an MNIST file"
                )
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    data = b"".join(chunks)
    if total is not None and len(data) != total:
        raise SourceError(
            f"{where}: connection closed after {len(data)} of {total} bytes", transient=True
        )
    return data


def _progress_bar(total: int | None, name: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="B", unit_scale=True, file=sys.stderr, leave=False)
