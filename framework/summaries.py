"""TensorBoard summaries written by hand with tf.summary, one event folder per kind.

model_dir/train holds training scalars and texts; model_dir/eval evaluation metrics and
images; the run's root the hparams summary. Writers are created on first use, so a failed
start writes nothing.
"""

import tensorflow as tf

from framework.observers import EvalOutput, Observer
from framework.run_dir import RunDir


class Summaries:
    """Per-kind ('train', 'eval', '' for the root) tf.summary writers under model_dir."""

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def writer(self, kind: str) -> tf.summary.SummaryWriter:
        if kind not in self._writers:
            self._writers[kind] = tf.summary.create_file_writer(self.run_dir.events(kind))
        return self._writers[kind]

    def scalars(self, kind: str, values: dict[str, float], step: int) -> None:
        with self.writer(kind).as_default(step=step):
            for tag, value in values.items():
                tf.summary.scalar(tag, value)

    def text(self, kind: str, tag: str, text: str, step: int) -> None:
        with self.writer(kind).as_default(step=step):
            tf.summary.text(tag, text)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class ScalarSummaries(Observer):
    """Training summaries' scalars into train/, every evaluation's metrics into eval/."""

    def __init__(self, summaries: Summaries):
        self.summaries = summaries

    def after_train_summary(self, step: int, scalars: dict[str, float]) -> None:
        self.summaries.scalars("train", scalars, step)

    def after_eval(self, step: int, output: EvalOutput) -> None:
        self.summaries.scalars("eval", output.scalars, step)


def as_code(text: str) -> str:
    """Indented, so TensorBoard's markdown shows text (a config, a table) as it is."""
    return "\n".join("    " + line for line in text.splitlines())
