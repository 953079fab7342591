"""One live run per model_dir: an advisory file lock that dies with its process."""

import fcntl
import os

from framework.errors import UserError

LOCK_FILE = ".lock"


class ModelDirLock:
    """`with ModelDirLock(model_dir):` holds model_dir/.lock for the run.

    The lock is `flock`ed, so the kernel drops it when the process ends however it ends
    (kill -9 included): a dead run never leaves it stuck. The file keeps the holder's PID
    only to name it in the refusal.
    """

    def __init__(self, model_dir: str):
        self.path = os.path.join(model_dir, LOCK_FILE)
        self._file = None

    def __enter__(self):
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
        except OSError as error:
            raise UserError(f"Cannot write to model_dir {os.path.dirname(self.path)}: "
                            f"{error.strerror}. Choose a --model_dir you can write to.") from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(
                f"{os.path.dirname(self.path)} is in use by a live run (PID {holder}). Wait "
                "for it to finish, stop it, or use another --model_dir."
            ) from error
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
