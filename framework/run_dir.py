"""The model_dir of a run: every path and file in it, the lock, and the config diff.

    model_dir/
      .lock                  held by the live training run (flock: released when it ends)
      operative_config.gin   every parameter the run used
      dataset_info.json      the data's info (class names for --mode=predict)
      compute_policy.txt     what precision_policy 'auto' became when the run started
      checkpoints/           the last N checkpoints; best/ the best one and best_metric.json
      train/ eval/           TensorBoard events (the run's root holds the hparams summary)
      feature_cache/         a frozen backbone's features, unless a shared folder is named
      export/<step>/         exports (framework.export): TensorFlow Serving's layout, with
                             the model_base_path export/ and one version per step

Reading never writes: a start that fails leaves model_dir as it was.
"""

import dataclasses
import difflib
import fcntl
import json
import os

import tensorflow as tf
from absl import logging

from framework.errors import UserError

CONFIG_FILE = "operative_config.gin"
DATASET_INFO_FILE = "dataset_info.json"
COMPUTE_POLICY_FILE = "compute_policy.txt"
LOCK_FILE = ".lock"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"  # inside the checkpoints folder
BEST_RECORD_FILE = "best_metric.json"  # beside the best checkpoint
EXPORT_DIR = "export"


class RunDir:
    """Paths and files of one model_dir."""

    def __init__(self, path: str):
        self.path = path

    # -- paths ----------------------------------------------------------------------------

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def checkpoints(self) -> str:
        return self.file(CHECKPOINTS_DIR)

    @property
    def best_checkpoints(self) -> str:
        return os.path.join(self.checkpoints, BEST_DIR)

    @property
    def best_record(self) -> str:
        return os.path.join(self.best_checkpoints, BEST_RECORD_FILE)

    def events(self, kind: str) -> str:
        """TensorBoard's folder for `kind`: 'train', 'eval', or '' for the run's root."""
        return os.path.join(self.path, kind) if kind else self.path

    @property
    def profile(self) -> str:
        """Where the profiler writes (TensorBoard finds it under train/plugins/profile)."""
        return self.events("train")

    def export(self, step: int) -> str:
        """Where the checkpoint of `step` is exported by default: export/<step>."""
        return os.path.join(self.file(EXPORT_DIR), str(step))

    @property
    def feature_cache(self) -> str:
        return self.file("feature_cache")

    @property
    def name(self) -> str:
        """The folder's own name (what TensorBoard's HParams tab calls the trial)."""
        return os.path.basename(os.path.normpath(self.path))

    # -- files ----------------------------------------------------------------------------

    def saved_config(self) -> str | None:
        return _read(self.file(CONFIG_FILE))

    def config_changes(self, config: str) -> str:
        """How `config` differs from the operative config saved here ('' if nothing is)."""
        saved = self.saved_config()
        return "" if saved is None else config_changes(saved, config)

    def write_config(self, config: str) -> None:
        """Saves the operative config, logging how it differs from the one saved before."""
        changes = self.config_changes(config)
        if changes:
            logging.warning("This run's config differs from the one saved in %s:\n%s",
                            self.file(CONFIG_FILE), changes)
        _write(self.file(CONFIG_FILE), config)

    def saved_dataset_info(self) -> dict | None:
        """The data's info saved when the run trained (its class names), if any."""
        text = _read(self.file(DATASET_INFO_FILE))
        return None if text is None else json.loads(text)

    def write_dataset_info(self, info) -> None:
        _write(self.file(DATASET_INFO_FILE), json.dumps(dataclasses.asdict(info), indent=2))

    def saved_compute_policy(self) -> tuple[str, str] | None:
        """(what precision_policy 'auto' became when this run started, the file it is
        kept in), if it was 'auto'."""
        path = self.file(COMPUTE_POLICY_FILE)
        text = _read(path)
        return None if text is None else (text.strip(), path)

    def write_compute_policy(self, policy: str) -> None:
        _write(self.file(COMPUTE_POLICY_FILE), policy)

    def lock(self) -> "RunLock":
        return RunLock(self.file(LOCK_FILE))


class RunLock:
    """`with run_dir.lock():` holds model_dir/.lock for a training run.

    The lock is `flock`ed, so the kernel drops it when the process ends however it ends
    (kill -9 included): a dead run never leaves it stuck. The file keeps the holder's PID
    only to name it in the refusal.
    """

    def __init__(self, path: str):
        self.path = path
        self._file = None

    def __enter__(self):
        folder = os.path.dirname(self.path) or "."
        try:
            os.makedirs(folder, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
        except OSError as error:
            raise UserError(f"Cannot write to model_dir {folder}: {error.strerror}. Choose a "
                            "--model_dir you can write to.") from error
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"{folder} is in use by a live run (PID {holder}). Wait for it to "
                            "finish, stop it, or use another --model_dir.") from error
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def config_changes(before: str, after: str) -> str:
    """The bindings that differ between two operative configs, as a unified diff."""
    def bindings(text):
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    diff = difflib.unified_diff(bindings(before), bindings(after), "saved", "this run",
                                lineterm="", n=0)
    return "\n".join(line for line in diff if not line.startswith("@@"))


def _read(path: str) -> str | None:
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)
