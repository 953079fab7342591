"""Checkpoints: tf.train.Checkpoint + tf.train.CheckpointManager under model_dir/checkpoints."""

import os

import tensorflow as tf
from absl import logging

from framework.errors import UserError


class Checkpoints:
    """Saves and restores everything that decides the rest of a run.

    Contract: `restore_latest()` only reads; nothing is written before the first `save()`,
    so a start that fails after restoring leaves model_dir as it was.
    """

    def __init__(self, model_dir: str, max_to_keep: int, save_dir: str | None = None,
                 **trackables):
        """Restores from model_dir/checkpoints; saves there too unless `save_dir` is given."""
        self.directory = os.path.join(model_dir, "checkpoints")
        self._save_dir = save_dir or self.directory
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self._max_to_keep = max_to_keep
        self._manager = None  # created on first save: the manager makes the directory

    @property
    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self) -> str | None:
        """Restores the newest checkpoint, if any; returns its path."""
        path = self.latest
        if path is None:
            return None
        try:
            # Every object the checkpoint holds must find its variable, and shapes must
            # agree: a checkpoint of a different model is an error, not a partial restore.
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise UserError(
                f"The checkpoint {path} does not fit this experiment's model or optimizer "
                f"({str(error).splitlines()[0][:300]}). Use another --model_dir, or the "
                "config that wrote this checkpoint (see operative_config.gin beside it)."
            ) from error
        logging.info("Restored %s", path)
        return path

    def save(self, step: int) -> str:
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, self._save_dir, max_to_keep=self._max_to_keep)
        path = self._manager.save(checkpoint_number=step)
        logging.info("Saved checkpoint %s", path)
        return path
