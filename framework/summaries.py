"""TensorBoard summaries written by hand with tf.summary, one event directory per run kind.

model_dir/train holds training scalars and the config text; model_dir/eval holds
evaluation metrics. Writers are created on first use, so a failed start writes nothing.
"""

import os

import tensorflow as tf


class Summaries:
    """Per-kind (`train`, `eval`) tf.summary writers under model_dir."""

    def __init__(self, model_dir: str, enabled: bool = True):
        self.model_dir, self.enabled = model_dir, enabled
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def writer(self, kind: str) -> tf.summary.SummaryWriter:
        if kind not in self._writers:
            self._writers[kind] = tf.summary.create_file_writer(
                os.path.join(self.model_dir, kind))
        return self._writers[kind]

    def scalars(self, kind: str, values: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        with self.writer(kind).as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, value)

    def text(self, kind: str, tag: str, text: str, step: int) -> None:
        if not self.enabled:
            return
        with self.writer(kind).as_default(step=step):
            tf.summary.text(tag, text)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
