"""Load on a running `digits serve`: concurrent clients POST a drawing to /api/predict.

    digits serve --port 8000 &
    digits bench --serve http://127.0.0.1:8000 [--clients 1 8] [--requests 200] [--picture P]

For each number of clients, after a few warm-up requests, that many threads send
``--requests`` requests in all, each on its own connection (the server speaks HTTP/1.0), and
the line printed gives requests/s, the median and 95th-percentile latency and the number of
errors (any answer but 200, or no answer). Without ``--picture`` the body is a 280x280 PNG of a
7 drawn as on the page. The last line is JSON: {"1": {"requests_per_s": ..., "p50_ms": ...,
"p95_ms": ..., "errors": ...}, "8": {...}}.
"""

import argparse
import http.client
import io
import json
import statistics
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digits.errors import DigitsError

WARM_UP_REQUESTS = 5
CLIENT_TIMEOUT_S = 30


def drawn_seven(side: int = 280) -> bytes:
    """PNG bytes of a black 7 on white, ``side`` px square, drawn with the page's pen width
    (20 px of 280): what the page sends."""
    image = Image.new("L", (side, side), 255)
    scale = side / 280
    corners = [(70 * scale, 60 * scale), (210 * scale, 60 * scale), (120 * scale, 230 * scale)]
    ImageDraw.Draw(image).line(corners, fill=0, width=round(20 * scale), joint="curve")
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    return stream.getvalue()


def post(url: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` on a new connection; (status, response body)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=CLIENT_TIMEOUT_S)
    try:
        connection.request("POST", parts.path, body, {"Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def load(url: str, body: bytes, clients: int, requests: int) -> dict:
    """Send ``requests`` POSTs of ``body`` to ``url`` from ``clients`` threads at once:
    {"requests_per_s", "p50_ms", "p95_ms", "errors", "requests", "clients"}."""
    latencies: list[float] = []
    errors: list[str] = []
    remaining = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            started = time.perf_counter()
            try:
                status, answer = post(url, body)
                problem = None if status == 200 else f"HTTP {status}: {answer[:200]!r}"
            except OSError as error:
                problem = f"{type(error).__name__}: {error}"
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if problem:
                    errors.append(problem)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * percentile(latencies, 95), 1),
    }


def percentile(values: list[float], percent: float) -> float:
    """The ``percent``-th percentile of ``values`` (nearest rank: a value that occurred)."""
    return float(np.percentile(values, percent, method="inverted_cdf"))


def server_url(text: str) -> str:
    """argparse type: the address `digits serve` printed, http://HOST:PORT."""
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port  # raises for a port that is not 0-65535
    except ValueError:  # also an unclosed [IPv6 address
        parts, port = None, None
    if (
        parts is None
        or parts.scheme != "http"
        or not parts.hostname
        or port is None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected the address `digits serve` printed, http://HOST:PORT "
            "(e.g. http://127.0.0.1:8000)"
        )
    return text


def run(server: str, clients: list[int], requests: int, picture: Path | None) -> None:
    url = server.rstrip("/") + "/api/predict"
    body = picture.read_bytes() if picture else drawn_seven()
    try:
        status, answer = post(url, body)
    except OSError as error:
        raise DigitsError(f"{url}: no answer ({error}); is `digits serve` running?") from None
    if status != 200:
        raise DigitsError(f"{url}: HTTP {status} for the picture: {answer[:300].decode()}")
    print(f"{url}: {len(body):,} bytes a request, answer {json.loads(answer)['digit']}")
    for _ in range(WARM_UP_REQUESTS):
        post(url, body)
    results = {}
    for count in clients:
        result = load(url, body, count, requests)
        results[str(count)] = result
        print(
            f"{count:3d} client{'s' if count > 1 else ' '}: {result['requests']} requests, "
            f"{result['errors']} errors, {result['requests_per_s']:.1f} requests/s, "
            f"p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms",
            flush=True,
        )
        if result["first_error"]:
            print(f"     first error: {result['first_error']}")
    print(json.dumps(results, sort_keys=True))
