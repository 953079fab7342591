"""The metrics a task gets when Experiment.metrics is not set."""

import keras
import tensorflow as tf

from framework.data import DatasetInfo


def default_metrics(info: DatasetInfo) -> list[keras.metrics.Metric]:
    """Accuracy for classification (models output logits), mean absolute error otherwise."""
    if info.task == "classification":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if info.task == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
    return [keras.metrics.MeanAbsoluteError(name="mean_absolute_error")]


class ConfusionMatrix(keras.metrics.Metric):
    """Counts of (true class, predicted class) over the batches seen; rows are true classes.

    Takes logits: the arg-max for several classes, > 0 for one (binary). Its variable sums
    over replicas, so under a strategy it counts every example once.
    """

    def __init__(self, num_classes: int, name="confusion_matrix", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.matrix = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                        dtype="float32", aggregation="sum", name="matrix")

    def update_state(self, labels, logits, sample_weight=None):
        if logits.shape[-1] == 1:
            predicted = tf.cast(tf.reshape(logits, [-1]) > 0.0, tf.int64)
        else:
            predicted = tf.argmax(logits, axis=-1)
        self.matrix.assign_add(tf.math.confusion_matrix(
            tf.cast(tf.reshape(labels, [-1]), tf.int64), predicted, self.num_classes,
            dtype=tf.float32))

    def result(self):
        return tf.convert_to_tensor(self.matrix)

    def reset_state(self):
        self.matrix.assign(tf.zeros_like(self.matrix))
