"""What every stage script shares at its edges: logging, and turning errors into exit codes."""

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from digits.errors import DigitsError

log = logging.getLogger("digits")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a ``DigitsError`` becomes one line on stderr and exit status 1,
    Ctrl-C exit status 130. Outputs are written atomically, so neither leaves a partial file."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    try:
        main()
    except DigitsError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: earlier outputs are left as they were", file=sys.stderr)
        sys.exit(130)


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
