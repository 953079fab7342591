"""Weight and gradient histograms: what the trainable variables look like as training goes.

Per trainable variable, grouped by layer ('<layer>/<variable>'), into train/: its histogram,
its mean, stddev, min and max, and the histogram of its gradient on a fixed training batch
(computed in inference mode, so BatchNorm statistics and dropout are left alone).
"""

import tensorflow as tf

from framework.cadence import Cadence
from framework.objective import Objective
from framework.observers import LoopOutput, Observer
from framework.precision import float32_outputs
from framework.summaries import Summaries


class WeightHistograms(Observer):
    """Writes into train/ at the steps `cadence` is due.

    fixed_batch: () -> (features, labels), the same training batch every time; None: no
    gradient histograms.
    """

    def __init__(self, cadence: Cadence, summaries: Summaries, model,
                 objective: Objective, fixed_batch=None):
        self.cadence, self.summaries = cadence, summaries
        self.model, self.objective, self.fixed_batch = model, objective, fixed_batch
        self._gradients = tf.function(self._gradients_fn)

    def after_train_loop(self, step: int, output: LoopOutput) -> None:
        if not self.cadence.due(step):
            return
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
    """'<layer>/<variable>' (the last two parts of the variable's path), so TensorBoard
    groups a layer's summaries together."""
    return "/".join(variable.path.split("/")[-2:])
