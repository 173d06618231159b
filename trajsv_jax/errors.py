"""The one exception type that reaches the user: its message is the whole story (what, where, how to fix)."""


class UserError(Exception):
    """Bad input or a bad request. The CLI prints str(error) on one line and exits 2, without a traceback."""
