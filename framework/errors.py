"""The one exception type that means "the user can fix this"."""


class UserError(Exception):
    """A mistake in the command line, the gin config, the data or the model_dir.

    `framework.main` prints its message alone (no traceback unless --verbose) and exits
    non-zero, so the message must name the problem and the fix in a short paragraph.
    """


def first_line(error: Exception) -> str:
    """The first non-empty line of an exception's message, shortened: what a UserError
    quotes from the library that raised it."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:400]
