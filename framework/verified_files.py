"""What this machine has already verified of a dataset's files, so later starts (a resume,
an evaluation, the next run on the same data) skip reading them all again.

A mark is an empty file in MARKS_DIR named by a fingerprint of what was verified: the
files' paths, sizes and modification times, plus whatever else the check depended on.
Replacing or rewriting a file changes its fingerprint, so it is verified again; damage
that leaves size and time alone (a failing disk) is then found by TensorFlow when it reads
the file, without the file's name.
"""

import hashlib
import os

MARKS_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "tf_loop_lab",
                         "verified")


def fingerprint(paths, *also) -> str:
    """A name for `paths` as they are now (path, size, time of each) and `also`."""
    digest = hashlib.sha256(repr(also).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def is_verified(name: str) -> bool:
    return os.path.exists(os.path.join(os.path.expanduser(MARKS_DIR), name))


def mark_verified(name: str) -> None:
    """Remembers that what `name` fingerprints passed its check."""
    path = os.path.join(os.path.expanduser(MARKS_DIR), name)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()  # pylint: disable=consider-using-with
    except OSError:
        pass  # only a saving: the next start verifies again
