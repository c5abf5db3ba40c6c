"""The project's errors: what every stage and command turns into one line and a non-zero exit."""


class DigitsError(Exception):
    """A problem the user can fix: the message names the file or key and what was expected."""


class ParamsError(DigitsError):
    """``params.yaml`` is missing, unparsable, or has a key with a wrong or unknown value."""
