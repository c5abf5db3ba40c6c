"""Serve the model on a local web page: draw a digit and watch it guess; see the results.

    digits serve [--host 127.0.0.1] [--port 8000] [--model data/model.keras] [--own-dir data/own]

Open the address it prints. The page (src/digits/web/, served from the package: it works
offline) sends each drawing to the API below, which answers as `digits predict` would (the same
loader and normalisation, src/digits/images.py):

    POST /api/predict          body: picture file bytes (PNG, JPEG, ...)
        200 {"digit": d, "probabilities": [10 floats], "frame": base64 PNG of the 28x28 input}
    POST /api/own?label=D      body: picture file bytes; files it under --own-dir/D/
        201 {"path": "data/own/D/<hash>.png", "label": D}
    GET  /api/model            the served model (md5, dvc.lock's md5, git commit), the test
                               metrics (metrics/metrics.json) and the figures under /plots/
    errors: {"error": "..."} with 400 (not a picture, no digit, bad label), 404 (unknown path),
    405 (wrong method), 408 (body not sent within 10 s), 411 (no Content-Length), 413 (body
    or picture too large), 503 (more than 64 connections at once)

Ctrl-C stops it. Port 0 takes any free port.
"""

import argparse
import base64
import dataclasses
import errno
import http.server
import io
import json
import logging
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from digits.data import scale_pixels
from digits.errors import DigitsError
from digits.fetch import md5_hex
from digits.files import OutputError
from digits.images import (
    TooManyPixelsError,
    decode_grayscale,
    mnist_frame,
    printable_path,
)
from digits.own import file_picture
from digits.paths import LOCK, METRICS, MODEL, OWN, PLOT_IMAGES, in_project, project_root
from digits.yamlfile import load_yaml

log = logging.getLogger("serve")

MAX_BODY_BYTES = 8_000_000  # a 12 MP phone photo as JPEG is 3-6 MB; a drawing is ~10 kB
MAX_PICTURE_PIXELS = 12_600_000  # a 12 MP phone photo (4032x3024); 48 MP ones: resize first
DISCARD_BYTES = 64_000_000  # of a refused body, read and dropped after its answer
REQUEST_SECONDS = 10.0  # a whole request must arrive in this; a slow client is cut off
MAX_CONNECTIONS = 64  # at once; more are refused (503) rather than each holding a thread
PROBABILITY_DIGITS = 6  # as `digits predict --json`
WEB_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:",
    "Referrer-Policy": "no-referrer",
}


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, value) -> Response:
    return Response(status, json.dumps(value).encode())


def error_response(status: int, message: str, headers: tuple = ()) -> Response:
    return Response(status, json.dumps({"error": message}).encode(), headers=headers)


class Classifier:
    """The model, loaded once and called from many request threads, one call at a time."""

    def __init__(self, model) -> None:
        self._model = model
        self._lock = threading.Lock()

    def probabilities(self, frame: np.ndarray) -> np.ndarray:
        """float32 (10,) probabilities of uint8 (28, 28) ``frame``."""
        inputs = scale_pixels(frame[np.newaxis])
        # predict_on_batch runs Keras' compiled predict step: 0.9 ms from a new thread, where
        # calling the model eagerly takes 5 ms and model.predict (a dataset per call) ~30 ms.
        with self._lock:
            return np.asarray(self._model.predict_on_batch(inputs))[0]


def prediction(data: bytes, probabilities: Callable[[np.ndarray], np.ndarray]) -> dict:
    """The /api/predict answer for picture bytes ``data``: the digit, its ten probabilities
    and the 28x28 frame the model saw (base64 PNG). Raises ``ImageError``."""
    gray = decode_grayscale(io.BytesIO(data), "the picture", max_pixels=MAX_PICTURE_PIXELS)
    frame = mnist_frame(gray, "the picture")
    scores = probabilities(frame)
    return {
        "digit": int(scores.argmax()),
        "probabilities": [round(float(p), PROBABILITY_DIGITS) for p in scores],
        "frame": base64.b64encode(png_bytes(frame)).decode("ascii"),
    }


def png_bytes(pixels: np.ndarray) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format="PNG")
    return stream.getvalue()


def parse_label(query: str) -> int:
    """The digit in a query string's ``label`` (``label=7``); ``DigitsError`` otherwise."""
    values = urllib.parse.parse_qs(query).get("label", [])
    if len(values) != 1 or values[0] not in tuple("0123456789"):
        raise DigitsError(f"label: expected one digit 0-9 (?label=7), got {values or 'none'}")
    return int(values[0])


class Site:
    """What the server answers, apart from sockets: every page, file and API route.

    Everything it shows is read once, when it starts: the files it serves are these and no
    others (no path from a request ever reaches the file system), and the results view
    describes the model as it was loaded.
    """

    def __init__(
        self,
        classifier: Classifier,
        files: dict[str, Response],
        model_info: dict,
        own_dir: Path,
    ) -> None:
        self.classifier = classifier
        self.files = files
        self.model_info = model_info
        self.own_dir = own_dir
        self.api = {"/api/predict": self.predict, "/api/own": self.file_own}

    def allowed_methods(self, path: str) -> tuple[str, ...]:
        """The methods ``path`` answers; () for a path that does not exist."""
        if path in self.files or path == "/api/model":
            return ("GET", "HEAD")
        if path in self.api:
            return ("POST",)
        return ()

    def get(self, path: str) -> Response:
        if path == "/api/model":
            return json_response(200, self.model_info)
        return self.files[path]

    def post(self, path: str, query: str, body: bytes) -> Response:
        try:
            return self.api[path](query, body)
        except TooManyPixelsError as error:
            return error_response(413, str(error))
        except OutputError as error:  # the server cannot write data/own: not the client's fault
            log.error("%s", error)
            return error_response(500, str(error))
        except DigitsError as error:  # ImageError: not a picture, no digit; a bad label
            return error_response(400, str(error))

    def predict(self, query: str, body: bytes) -> Response:
        return json_response(200, prediction(body, self.classifier.probabilities))

    def file_own(self, query: str, body: bytes) -> Response:
        label = parse_label(query)
        decode_grayscale(io.BytesIO(body), "the picture", max_pixels=MAX_PICTURE_PIXELS)
        path = shown_path(file_picture(body, label, self.own_dir))
        log.info("filed a picture of a %d as %s", label, path)
        return json_response(201, {"path": path, "label": label})


def shown_path(path: Path) -> str:
    """``path`` relative to the project root when it is inside it (data/own/7/...)."""
    root = project_root()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def web_files(web_dir, plot_dir: Path) -> dict[str, Response]:
    """URL path -> response for the page's own files (``/`` is index.html, the rest under
    ``/static/``) and the evaluate stage's figures (``/plots/NAME.png``)."""
    files = {}
    for entry in web_dir.iterdir():
        content_type = WEB_TYPES.get(Path(entry.name).suffix)
        if entry.is_file() and content_type:
            files[f"/static/{entry.name}"] = Response(200, entry.read_bytes(), content_type)
    files["/"] = files.pop("/static/index.html")
    if plot_dir.is_dir():
        for path in sorted(plot_dir.glob("*.png")):
            files[f"/plots/{path.name}"] = Response(200, path.read_bytes(), "image/png")
    return files


def describe_model(model_path: Path, project: Path) -> dict:
    """What /api/model says: the served model file's md5 beside the one dvc.lock records for
    it, the git commit, the test metrics and the figure URLs."""
    md5 = md5_hex(model_path.read_bytes())
    locked = locked_md5(project / LOCK, MODEL)
    metrics_path = project / METRICS
    metrics = None
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_bytes())
        except ValueError as error:  # a merge conflict's markers, say
            raise DigitsError(
                f"{printable_path(metrics_path)}: not the evaluate stage's JSON ({error}): "
                f"`git checkout -- {METRICS}` or `dvc repro evaluate`"
            ) from None
    plot_dir = project / PLOT_IMAGES
    plots = sorted(p.name for p in plot_dir.glob("*.png")) if plot_dir.is_dir() else []
    return {
        "model": {
            "path": shown_path(model_path.resolve()),
            "md5": md5,
            "dvc_lock_md5": locked,
            "matches_dvc_lock": md5 == locked,
        },
        "git": git_state(project),
        "metrics": metrics,
        "plots": {Path(name).stem: f"/plots/{name}" for name in plots},
    }


def locked_md5(lock: Path, output: Path) -> str | None:
    """The md5 that ``lock`` (dvc.lock) records for the stage output ``output``, if any."""
    if not lock.is_file():
        return None
    document = load_yaml(lock) or {}
    stages = document.get("stages", {}) if isinstance(document, dict) else None
    if not isinstance(stages, dict) or not all(isinstance(s, dict) for s in stages.values()):
        raise DigitsError(
            f"{printable_path(lock)}: not what DVC writes (stages: a mapping of stage names to "
            f"their deps and outs): `git checkout -- {LOCK}` or `dvc repro`"
        )
    for stage in stages.values():
        for out in stage.get("outs", []):
            if isinstance(out, dict) and out.get("path") == str(output):
                return out.get("md5")
    return None


def git_state(project: Path) -> dict:
    """{"commit": HEAD's hash, "dirty": whether tracked files differ from it}; nulls outside
    a git checkout."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", *args], cwd=project, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection: one request (HTTP/1.0), read within ``REQUEST_SECONDS``, answered with
    ``Site``; every error is JSON and none reaches the client as a traceback."""

    site: Site  # set on a subclass by make_server
    default_request_version = "HTTP/1.0"  # even an unreadable request gets a status line
    # per read, a backstop: the deadline in setup() bounds them all together, and must come
    # first, or a read that times out closes the connection without an answer
    timeout = 2 * REQUEST_SECONDS

    def version_string(self) -> str:
        return "digits"

    def setup(self) -> None:
        super().setup()
        self.timed_out = False
        self.unread = 0  # bytes of a refused body still to drop
        self.deadline = threading.Timer(REQUEST_SECONDS, self.cut_off)
        self.deadline.daemon = True
        self.deadline.start()

    def finish(self) -> None:
        self.deadline.cancel()
        try:
            super().finish()
        except OSError:
            pass  # the client left, or was cut off

    def cut_off(self) -> None:
        """Make a read that is still waiting return at once: a client that sends slowly
        (a byte every few seconds) cannot hold its thread beyond the deadline."""
        self.timed_out = True
        log.info("%s: cut off after %.0f s", self.client_address[0], REQUEST_SECONDS)
        try:
            self.connection.shutdown(socket.SHUT_RD)  # writing still works: a 408 can go out
        except OSError:
            pass

    def __getattr__(self, name: str):
        # BaseHTTPRequestHandler answers a method it has no do_<METHOD> for with 501; every
        # method exists for some path here, so the answer is 404 or 405.
        if name.startswith("do_"):
            return self.answer
        raise AttributeError(name)

    def answer(self) -> None:
        started = time.perf_counter()
        path, _, query = self.path.partition("?")
        allowed = self.site.allowed_methods(path)
        shown = printable_path(path[:200])  # a request line may hold 64 kB of anything
        if self.timed_out:  # cut off in the headers, which then end early
            response = error_response(
                408, f"the request did not arrive within {REQUEST_SECONDS:.0f} s"
            )
        elif not allowed:
            response = error_response(404, f"{shown}: no such page or API")
        elif self.command not in allowed:
            response = error_response(
                405,
                f"{shown}: {self.command} is not allowed here, only {', '.join(allowed)}",
                headers=(("Allow", ", ".join(allowed)),),
            )
        elif self.command == "POST":
            response = self.read_body_and(lambda body: self.site.post(path, query, body))
        else:
            response = self.site.get(path)
        self.send(response)
        if self.unread:
            self.discard(self.unread)
        log.debug("%s %s %d %.1f ms", self.command, path, response.status, _ms(started))

    def read_body_and(self, respond: Callable[[bytes], Response]) -> Response:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return error_response(411, "a Content-Length header is required")
        digits = length_text.strip()
        if not (digits.isascii() and digits.isdigit()):  # isdigit alone takes "²"
            return error_response(400, f"Content-Length: not a number, got {length_text!r}")
        length = int(digits)
        if length > MAX_BODY_BYTES:
            self.unread = length  # dropped after the answer has gone out (``answer``)
            return error_response(413, f"the body is {length:,} bytes, over {MAX_BODY_BYTES:,}")
        body = self.rfile.read(length)
        if len(body) < length and self.timed_out:
            return error_response(408, f"the body did not arrive within {REQUEST_SECONDS:.0f} s")
        if len(body) < length:
            return error_response(400, f"the body ended after {len(body)} of {length} bytes")
        try:
            return respond(body)
        except Exception as error:  # a bug: say so in the log, never as a traceback to the client
            log.exception("unexpected %s answering %s", type(error).__name__, self.path)
            return error_response(500, "internal error (see the server's log)")

    def discard(self, length: int) -> None:
        """Read and drop up to ``length`` bytes of a body that was refused (the deadline still
        applies), at most ``DISCARD_BYTES``: closing with it unread resets the connection, and
        a client that sends the whole body before it reads would see that, not the answer."""
        left = min(length, DISCARD_BYTES)
        try:
            while left > 0 and (chunk := self.rfile.read(min(left, 65536))):
                left -= len(chunk)
        except OSError:
            pass

    def send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            headers = {
                "Content-Type": response.content_type,
                "Content-Length": str(len(response.body)),
                "Cache-Control": "no-store",
                **SECURITY_HEADERS,
                **dict(response.headers),
            }
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            pass  # the client went away; nothing to tell it

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        """The base class's errors (bad request line, headers too long), as JSON."""
        self.close_connection = True
        self.send(error_response(code, message or self.responses.get(code, ("error",))[0]))

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def log_request(self, code="-", size="-") -> None:
        if isinstance(code, int) and code >= 400:
            path = getattr(self, "path", "")  # unset when the request line was unreadable
            log.info("%s %s -> %d", self.command, printable_path(path[:200]), code)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class Server(http.server.ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CONNECTIONS`` at once."""

    def __init__(self, address, handler) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def refuse(request: socket.socket) -> None:
    body = json.dumps({"error": "too many connections at once; try again"}).encode()
    head = "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nRetry-After: 1\r\n\r\n"
    try:
        request.sendall(head.encode() + body)
    except OSError:
        pass


def make_server(site: Site, host: str, port: int) -> Server:
    """A server bound to ``host``:``port`` (0: any free port) that answers with ``site``;
    IPv6 when ``host`` is an IPv6 address (``::``, ``::1``)."""
    handler = type("SiteHandler", (Handler,), {"site": site})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # "" is every IPv4 interface
    server = type("SiteServer", (Server,), {"address_family": family})
    return server((host, port), handler)


def listen(site: Site, host: str, port: int) -> Server:
    """``make_server``, its failure one ``DigitsError`` saying which option to change."""
    try:
        return make_server(site, host, port)
    except OSError as error:
        hints = {
            errno.EADDRINUSE: "is another server using the port? try --port 0",
            errno.EACCES: "ports below 1024 need privileges: choose --port 1024 or above",
        }
        hint = hints.get(error.errno, "--host must be an address or name of this machine")
        raise DigitsError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); {hint}"
        ) from None


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0-65535 (0: any free one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port number, 0-65535")
    return port


def load_site(model_path: Path, own_dir: Path, project: Path) -> Site:
    """Load the model once, warm it up, and read every file the site serves."""
    from digits.saving import load_model

    classifier = Classifier(load_model(model_path))
    classifier.probabilities(np.zeros((28, 28), dtype=np.uint8))  # traces the call once
    files = web_files(resources.files("digits") / "web", project / PLOT_IMAGES)
    return Site(classifier, files, describe_model(model_path, project), own_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine)")
    parser.add_argument(
        "--port", type=port_number, default=8000, help="default: 8000; 0: any free one"
    )
    parser.add_argument("--model", type=Path, help=f"default: {MODEL} in the project")
    parser.add_argument(
        "--own-dir", type=Path, help=f"where corrected drawings go (default: {OWN} in the project)"
    )


def run(args: argparse.Namespace) -> None:
    import tensorflow as tf

    # One picture a call is too small to share out: with one TensorFlow thread the p95 latency
    # of one client fell from 14-24 ms to 9-10 ms on a busy 2-core machine (8 clients: same).
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    project = project_root()
    site = load_site(
        args.model or in_project(MODEL, "--model"),
        args.own_dir or in_project(OWN, "--own-dir"),
        project,
    )
    server = listen(site, args.host, args.port)
    host, port = server.server_address[:2]
    if args.host in ("0.0.0.0", "::", ""):
        print(
            f"listening on every network interface: anyone who can reach this machine on port "
            f"{port} can use the model and file pictures into {site.own_dir}",
            flush=True,
        )
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(args.host, host)
    shown = f"[{shown}]" if ":" in shown else shown
    model = site.model_info["model"]["path"]
    print(f"serving {model} at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
