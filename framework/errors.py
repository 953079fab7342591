"""The one exception type that means "the user can fix this"."""


class UserError(Exception):
    """A mistake in the command line, the gin config, the data or the model_dir.

    `framework.main` prints its message alone (no traceback unless --verbose) and exits
    non-zero, so the message must name the problem and the fix in a short paragraph.
    """
