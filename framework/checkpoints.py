"""Checkpoints under model_dir/checkpoints: the last N, the best by an eval metric, and
model weights taken from another run's checkpoint or a Keras weights file.

tf.train.Checkpoint + tf.train.CheckpointManager. The manager updates its `checkpoint`
state file only after a checkpoint's files are complete, so a process killed while saving
leaves the previous checkpoint as the latest. A checkpoint damaged later (truncated,
overwritten) is detected when restoring, and the next older one is used instead.
"""

import json
import os
import shutil

import tensorflow as tf
from absl import logging

from framework import weights_by_name
from framework.errors import UserError, first_line
from framework.observers import EvalOutput, Observer
from framework.run_dir import BEST_DIR, BEST_RECORD_FILE, RunDir

# What restoring a damaged checkpoint raises (as opposed to a checkpoint of another model);
# a truncated data file gives the reader's IndexError "Read less bytes than requested".
_DAMAGED = (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.OutOfRangeError,
            tf.errors.InternalError, tf.errors.UnknownError, IndexError)


class Checkpoints:
    """Saves and restores everything that decides the rest of a run.

    Contract: restoring only reads; nothing is written before the first save, so a start
    that fails after restoring leaves model_dir as it was.
    """

    def __init__(self, run_dir: RunDir, max_to_keep: int, save_dir: str | None = None,
                 **trackables):
        """Restores from model_dir/checkpoints; saves there too unless `save_dir` is given
        (the non-chief workers of a multi-worker run)."""
        self.directory, self.best_directory = run_dir.checkpoints, run_dir.best_checkpoints
        self._best_record = run_dir.best_record
        self._save_dir = save_dir or self.directory
        self._scratch = save_dir  # a non-chief worker's own: removed by close()
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self._max_to_keep = max_to_keep
        self._managers: dict[str, tf.train.CheckpointManager] = {}  # made on first save

    def close(self) -> None:
        """Removes a non-chief worker's scratch folder (its saves are only its share of the
        chief's); the chief's checkpoints stay."""
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    @property
    def latest(self) -> str | None:
        """The newest checkpoint saved (by this run or an earlier one), if any."""
        return tf.train.latest_checkpoint(self._save_dir)

    # -- restoring ----------------------------------------------------------------------

    def restore(self, which: str = "latest") -> str | None:
        """Restores the newest good checkpoint ('latest') or the best one ('best').

        Returns its path, or None when there is none. A damaged checkpoint is skipped with
        a warning in favour of the next older one; a checkpoint of a different model is a
        UserError.
        """
        directory = self.best_directory if which == "best" else self.directory
        candidates = _newest_first(directory)
        for path in candidates:
            try:
                # Every variable the checkpoint holds must find its object and shapes must
                # agree: another model's checkpoint is an error, not a partial restore.
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except _DAMAGED as error:
                logging.warning("Checkpoint %s is damaged (%s); trying the one before it.",
                                path, first_line(error))
                continue
            except _NOT_FITTING as error:
                raise UserError(
                    f"{_does_not_fit(path, error, 'model or optimizer')} Use another "
                    "--model_dir, or the config that wrote this checkpoint (see "
                    "operative_config.gin beside it)."
                ) from error
            if path != candidates[0]:
                logging.warning("Resumed from %s, the newest checkpoint that is intact.", path)
            logging.info("Restored %s", path)
            return path
        if candidates:
            raise UserError(f"Every checkpoint in {directory} is damaged. Move them away to "
                            "start afresh, or use another --model_dir.")
        return None

    def best_record(self) -> dict | None:
        """{'metric', 'mode', 'value', 'step'} of the best checkpoint, if one was saved."""
        if not tf.io.gfile.exists(self._best_record):
            return None
        with tf.io.gfile.GFile(self._best_record) as f:
            return json.load(f)

    # -- saving -------------------------------------------------------------------------

    def save(self, step: int) -> str:
        path = self._manager("latest").save(checkpoint_number=step)
        logging.info("Saved checkpoint %s", path)
        return path

    def save_best(self, step: int, metric: str, mode: str, value: float) -> str:
        """Replaces the best checkpoint, and records the metric value beside it."""
        path = self._manager("best").save(checkpoint_number=step)
        record = {"metric": metric, "mode": mode, "value": value, "step": step}
        _write_atomically(os.path.join(os.path.dirname(path), BEST_RECORD_FILE),
                          json.dumps(record, indent=2))
        logging.info("New best %s %.4g at step %d: saved %s", metric, value, step, path)
        return path

    def _manager(self, which: str) -> tf.train.CheckpointManager:
        if which not in self._managers:
            directory = self._save_dir
            if which == "best":
                directory = os.path.join(directory, BEST_DIR)
            self._managers[which] = tf.train.CheckpointManager(
                self.checkpoint, directory,
                max_to_keep=1 if which == "best" else self._max_to_keep)
        return self._managers[which]


def require_best(run_dir: RunDir, metric: str | None) -> None:
    """Raises UserError, saying how a run gets one, when run_dir has no best checkpoint
    (what --checkpoint=best asks for)."""
    if _newest_first(run_dir.best_checkpoints):
        return
    if not metric:
        raise UserError(
            f"--checkpoint=best: {run_dir.path} has no best checkpoint, and a run keeps one "
            "only when Experiment.best_checkpoint_metric is set. Fix: set it (e.g. "
            "Experiment.best_checkpoint_metric = 'accuracy') and train, or use "
            "--checkpoint=latest.")
    raise UserError(
        f"--checkpoint=best: {run_dir.path} has no best checkpoint yet; one is kept when an "
        f"evaluation improves Experiment.best_checkpoint_metric ('{metric}'). Fix: train "
        "with evaluations (--mode=train_and_eval), or use --checkpoint=latest.")


def initialize_model(model, path: str) -> weights_by_name.LoadReport | None:
    """Starts `model` from another run's weights; the optimizer and step are not taken.

    A Keras file (.weights.h5 or .keras, framework.weights_by_name) is loaded by layer name
    into the layers whose names and shapes match, and its report returned. Anything else is
    a TensorFlow checkpoint (or a folder of them: the latest), restored by the model's
    structure, which must be the same; returns None then. Either way a path that cannot
    start this model is a UserError raised before any variable is assigned.
    """
    path = str(path)
    if weights_by_name.is_keras_file(path):
        return weights_by_name.load_by_name(model, path)
    if path.endswith((".h5", ".hdf5")):
        raise UserError(
            f"Experiment.init_checkpoint: {path} looks like a legacy Keras HDF5 file, which "
            "is not read here. Fix: load it into the model it came from with Keras and save "
            "that with model.save_weights('name.weights.h5'); that file is loaded by layer "
            "name.")
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise UserError(
                f"Experiment.init_checkpoint: the folder {path} holds no TensorFlow "
                "checkpoint. Fix: give a run's checkpoints folder (model_dir/checkpoints), "
                "one checkpoint in it (.../ckpt-1000), or a Keras .weights.h5 or .keras file.")
        path = latest
    elif not tf.io.gfile.exists(path + ".index"):
        raise UserError(
            f"Experiment.init_checkpoint: {path} is neither a TensorFlow checkpoint (no "
            f"{os.path.basename(path)}.index beside it) nor a Keras .weights.h5 or .keras "
            "file. Fix: give a run's checkpoints folder, one checkpoint in it "
            "(.../ckpt-1000), or a Keras weights file.")
    try:
        tf.train.Checkpoint(model=model).restore(path) \
            .assert_existing_objects_matched().expect_partial()
    except (*_NOT_FITTING, tf.errors.OpError) as error:
        raise UserError(
            f"Experiment.init_checkpoint: {_does_not_fit(path, error, 'model')} It must be a "
            "checkpoint (or a folder of them) of a run with the same model structure, or a "
            "Keras .weights.h5 or .keras file, which is loaded by layer name."
        ) from error
    logging.info("Model weights initialised from %s", path)
    return None


_NOT_FITTING = (AssertionError, ValueError, tf.errors.InvalidArgumentError)


def _does_not_fit(path: str, error: Exception, what: str) -> str:
    return f"The checkpoint {path} does not fit this experiment's {what} ({first_line(error)})."


def _newest_first(directory: str) -> list[str]:
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    return [p for p in reversed(paths) if tf.io.gfile.exists(p + ".index")]


def _write_atomically(path: str, text: str) -> None:
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(text)
    tf.io.gfile.rename(temporary, path, overwrite=True)


class BestCheckpoint(Observer):
    """After each evaluation that improves `metric` (by `mode`, 'max' or 'min') on the best
    so far, saves the current state to checkpoints/best with the value beside it (Keras's
    ModelCheckpoint(save_best_only=True))."""

    def __init__(self, checkpoints: Checkpoints, metric: str, mode: str):
        self.checkpoints, self.metric, self.mode = checkpoints, metric, mode

    def after_eval(self, step: int, output: EvalOutput) -> None:
        results = output.scalars
        if not results:
            return
        if self.metric not in results:
            raise UserError(f"Experiment.best_checkpoint_metric = '{self.metric}' is not an "
                            f"eval metric; the eval metrics are {', '.join(results)}.")
        value, best = results[self.metric], self.checkpoints.best_record()
        if best is None or (value > best["value"] if self.mode == "max"
                            else value < best["value"]):
            self.checkpoints.save_best(step, self.metric, self.mode, value)
