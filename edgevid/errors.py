"""The one error type shown to users as a single line (no traceback unless --verbose)."""


class EdgevidError(Exception):
    """A user-facing error: bad input, a missing file or package, an artifact that cannot be used."""
