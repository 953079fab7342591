"""The one exception type that means "the user can fix this", and the reading guard that
turns a damaged data file into one.
"""

import contextlib
import re


class UserError(Exception):
    """A mistake in the command line, the gin config, the data or the model_dir.

    `framework.main` prints its message alone (no traceback unless --verbose) and exits
    non-zero, so the message must name the problem and the fix in a short paragraph.
    """


class ClusterError(Exception):
    """A multi-worker run lost a worker (it died, or its collectives timed out). Printed
    like a UserError, without a traceback, with exit status 1: nothing to fix in the
    input; relaunch every worker to resume from the chief's latest checkpoint."""


# What TensorFlow wraps an op's own message in: "{{function_node ...}} " and " [Op:Name] ...".
_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$")


def first_line(error: Exception) -> str:
    """The first non-empty line of an exception's message, shortened: what a UserError
    quotes from the library that raised it (TensorFlow's wrapping of an op's message
    left out)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return _TF_NOISE.sub("", lines[0] if lines else type(error).__name__)[:400]


@contextlib.contextmanager
def reading(path, fix: str):
    """Guards the code that reads and decodes one data file: whatever goes wrong inside
    (truncated or corrupt bytes, a bad header, an unreadable file) leaves as one UserError
    naming `path`, what went wrong and `fix` (e.g. "Reinstall ...").

    Contract: a data reader wraps every read of a file it does not own in this, and checks
    inside it what it needs of the contents (shapes, ranges), so that its caller gets valid
    data or a UserError whatever bytes the file holds (tests/test_fuzz_data.py fuzzes it).
    Deliberately broad: the guarded block does nothing but read one file, so any exception
    there is about that file. A UserError raised inside passes through unchanged; so does
    MemoryError, which says nothing about the file.
    """
    try:
        yield
    except (UserError, MemoryError):
        raise
    except Exception as error:  # pylint: disable=broad-except  (see the docstring)
        raise UserError(f"{path} is damaged or unreadable ({described(error)}). {fix}") \
            from error


def described(error: Exception) -> str:
    """'EOFError: Compressed file ended ...': the error's kind and first line ('zlib.error',
    not a bare 'error')."""
    name = type(error).__name__
    if not name[0].isupper():
        name = f"{type(error).__module__.split('.')[0]}.{name}"
    return f"{name}: {first_line(error)}"
