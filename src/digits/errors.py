"""The one exception type the stages turn into a one-line error and a non-zero exit."""


class DigitsError(Exception):
    """A problem the user can fix: the message names the file or key and what was expected."""
