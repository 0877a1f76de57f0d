"""The one exception type that user-facing code raises for bad input.

The CLI prints it as a single line on stderr and exits non-zero; nodes log it and keep
their state. Anything else escaping is a bug.
"""


class KobaError(Exception):
    """Bad input or an impossible request, explained in one line."""
