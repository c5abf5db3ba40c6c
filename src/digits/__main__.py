"""``python -m digits``: the same as the ``digits`` command."""

from digits.cli import main

main()
