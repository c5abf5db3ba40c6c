"""The edges of every stage script and ``digits`` command: arguments, logging, quiet
TensorFlow, and turning errors and signals into one line on stderr and an exit status."""

import argparse
import atexit
import gc
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from digits.errors import DigitsError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
DEBUG_ENV = "DIGITS_DEBUG"


# At exit, leave every object to the operating system instead of the garbage collector's passes
# over all that TensorFlow and Keras made: 0.1 s instead of 0.75 s at the end of the train stage.
atexit.register(gc.freeze)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` and exit: see ``run_tool``."""
    sys.exit(run_tool(lambda: main()))


def run_tool(run: Callable, *args) -> int:
    """Call ``run(*args)`` and return its exit status (``None`` counts as 0).

    A ``DigitsError`` or an operating-system error (disk full, permission denied, ...) becomes
    one ``error:`` line on stderr and status 1; Ctrl-C or SIGTERM (what CI runners and
    ``timeout`` send) status 130. Outputs are written to temporary files and put in place only
    when all are complete, so neither leaves a partial output.
    """
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    quiet_tensorflow()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(*args) or 0
    except DigitsError as error:
        print(f"error: {error}", file=sys.stderr)
    except OSError as error:
        print(f"error: {describe_os_error(error)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"interrupted: {_what_interrupting_left()}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug, or a library failing in a way we did not foresee
        print(f"error: {describe_unexpected(error)}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_ERROR


def describe_unexpected(error: Exception) -> str:
    """One line for an exception nobody foresaw; the traceback too with DIGITS_DEBUG=1."""
    if os.environ.get(DEBUG_ENV):
        traceback.print_exc()
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    return (
        f"unexpected {type(error).__name__}: {first_line} (a bug: please report it; "
        f"{DEBUG_ENV}=1 shows the traceback)"
    )


def describe_os_error(error: OSError) -> str:
    """``path: reason`` for an operating-system error, e.g. ``out/m.keras: No space left``."""
    reason = error.strerror or str(error)
    names = [name for name in (error.filename, error.filename2) if name is not None]
    return f"{' -> '.join(map(str, names))}: {reason}" if names else reason


def _what_interrupting_left() -> str:
    if "DVC_STAGE" not in os.environ:  # DVC sets it for the commands it runs
        return "no output was replaced"
    return (
        "this stage replaced none of its outputs, but `dvc repro` removed them before it ran: "
        "`dvc checkout --force` and `git checkout -- metrics plots dvclive` bring back the last "
        "run's"
    )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up lines (oneDNN notes, CUDA probes) out of what users read;
    must run before TensorFlow is imported. An explicit TF_CPP_MIN_LOG_LEVEL wins."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def stage_arguments(doc: str, *path_options: str) -> argparse.Namespace:
    """Parse a stage's command line: ``--params`` (default params.yaml) and the required path
    options dvc.yaml passes (``--out-dir`` becomes ``args.out_dir``, a ``Path``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    for option in path_options:
        parser.add_argument(option, type=Path, required=True)
    return parser.parse_args()


def progress_on_terminal() -> bool:
    """Progress bars only on an interactive terminal; logs and CI get one line per step."""
    return sys.stderr.isatty()
