"""Weight and gradient histograms: what the trainable variables look like as training goes.

Per trainable variable, into train/, all under `weights/<layer>/<variable>` so that the
learning curves (accuracy, loss, ...) come first in the Scalars and Time Series lists
and the per-variable summaries gather in one group after them: its histogram, its mean,
stddev, min and max, and the histogram of its gradient on a fixed training batch
(computed in inference mode, so BatchNorm statistics and dropout are left alone).
"""

import tensorflow as tf

from framework.cadence import Cadence
from framework.objective import Objective
from framework.observers import LoopOutput, Observer
from framework.precision import float32_outputs
from framework.summaries import Summaries

PREFIX = "weights"  # sorts after the scalars of training and evaluation


class WeightHistograms(Observer):
    """Writes into train/ when training starts (the initial weights of a new run, or the
    restored ones), at the steps `cadence` is due, and at the step training ends, so the
    last histograms are of the final weights, whatever the cadence.

    fixed_batch: () -> (features, labels), the same training batch every time; None: no
    gradient histograms.
    """

    def __init__(self, cadence: Cadence, summaries: Summaries, model,
                 objective: Objective, fixed_batch=None):
        self.cadence, self.summaries = cadence, summaries
        self.model, self.objective, self.fixed_batch = model, objective, fixed_batch
        self._gradients = tf.function(self._gradients_fn)
        self._written_at = None

    def begin(self, step: int) -> None:
        self._write(step)

    def after_train_loop(self, step: int, output: LoopOutput) -> None:
        if self.cadence.due(step):
            self._write(step)

    def end(self, step: int) -> None:
        self._write(step)

    def _write(self, step: int) -> None:
        if step == self._written_at:
            return
        self._written_at = step
        variables = self.model.trainable_variables
        gradients = [None] * len(variables)
        if self.fixed_batch is not None:
            gradients = self._gradients(*self.fixed_batch())
        with self.summaries.writer("train").as_default(step=step):
            for variable, gradient in zip(variables, gradients):
                tag = layer_tag(variable)
                value = tf.convert_to_tensor(variable)
                tf.summary.histogram(tag, value)
                tf.summary.scalar(f"{tag}/mean", tf.reduce_mean(value))
                tf.summary.scalar(f"{tag}/stddev", tf.math.reduce_std(value))
                tf.summary.scalar(f"{tag}/min", tf.reduce_min(value))
                tf.summary.scalar(f"{tag}/max", tf.reduce_max(value))
                if gradient is not None:
                    tf.summary.histogram(f"{tag}/gradient", gradient)

    def _gradients_fn(self, features, labels):
        with tf.GradientTape() as tape:
            per_example, _ = self.objective.losses(
                labels, float32_outputs(self.model(features, training=False)))
            loss = tf.reduce_mean(per_example)
        return tape.gradient(loss, self.model.trainable_variables)


def layer_tag(variable) -> str:
    """'weights/<layer>/<variable>' (the last two parts of the variable's path), so
    TensorBoard groups a layer's summaries together, after the learning curves."""
    return "/".join([PREFIX, *variable.path.split("/")[-2:]])
