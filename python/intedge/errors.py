"""The one exception type users see. The CLI prints its message and exits with code 2."""


class IntedgeError(Exception):
    """A user-facing error: the message names what is wrong and how to fix it."""
