"""The one exception type a stage turns into a one-sentence message and exit code 2."""


class DiffaugError(Exception):
    """A problem the user can fix: the message names it and says how."""
