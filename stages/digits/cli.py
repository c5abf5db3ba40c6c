"""What every stage script shares at its edges: logging, and turning errors into exit codes."""

import logging
import sys
from collections.abc import Callable

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


def progress_on_terminal() -> bool:
    """Progress bars only on an interactive terminal; logs and CI get one line per step."""
    return sys.stderr.isatty()
