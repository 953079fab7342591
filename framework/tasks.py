"""What a task means: the predictions a model's logits stand for, and the default metrics.

Every module that turns logits into classes, probabilities or "right or wrong" asks here,
so the rule (one logit: positive when > 0; several: the arg-max) is written once.
"""

import keras
import tensorflow as tf

CLASSIFYING = ("classification", "binary")


def classifies(task: str) -> bool:
    """Whether outputs of this task are classes (a confusion matrix, a prediction grid)."""
    return task in CLASSIFYING


def class_count(task: str, num_outputs: int) -> int:
    """Classes a classifying output chooses from: one logit (binary) still means two."""
    del task  # the same rule for both classifying tasks
    return max(2, num_outputs)


def predicted_classes(task: str, logits: tf.Tensor) -> tf.Tensor:
    """The class index (int64, one per example) that logits of `task` predict."""
    if task == "binary":
        return tf.cast(tf.reshape(logits, [-1]) > 0.0, tf.int64)
    return tf.argmax(logits, axis=-1)


def probabilities(task: str, logits: tf.Tensor) -> tf.Tensor:
    """[examples, classes] probabilities: a softmax, or for one logit (binary) the two
    columns 1 - sigmoid and sigmoid."""
    if task == "binary":
        positive = tf.sigmoid(tf.reshape(logits, [-1, 1]))
        return tf.concat([1.0 - positive, positive], axis=-1)
    return tf.nn.softmax(logits, axis=-1)


def correct(task: str, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per example: does this classifying output give its label?"""
    return tf.equal(predicted_classes(task, logits), tf.cast(tf.reshape(labels, [-1]), tf.int64))


def all_correct(heads, labels: dict, outputs: dict) -> tf.Tensor:
    """Per example: is every head in `heads` ((name, task) pairs) right at once?"""
    right = [correct(task, labels[name], outputs[name]) for name, task in heads]
    return tf.reduce_all(tf.stack(right, axis=0), axis=0)


def default_metrics(task: str) -> list[keras.metrics.Metric]:
    """Accuracy for classification (models output logits), mean absolute error otherwise."""
    if task == "classification":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if task == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
    return [keras.metrics.MeanAbsoluteError(name="mean_absolute_error")]


class ConfusionMatrix(keras.metrics.Metric):
    """Counts of (true class, predicted class) over the batches seen; rows are true classes.

    Takes logits of `task`. Its variable sums over replicas, so under a strategy it counts
    every example once.
    """

    def __init__(self, task: str, num_outputs: int, name="confusion_matrix", **kwargs):
        super().__init__(name=name, **kwargs)
        self.task, self.num_classes = task, class_count(task, num_outputs)
        self.matrix = self.add_variable(shape=(self.num_classes, self.num_classes),
                                        initializer="zeros", dtype="float32",
                                        aggregation="sum", name="matrix")

    def update_state(self, labels, logits, sample_weight=None):
        self.matrix.assign_add(tf.math.confusion_matrix(
            tf.cast(tf.reshape(labels, [-1]), tf.int64), predicted_classes(self.task, logits),
            self.num_classes, dtype=tf.float32))

    def result(self):
        return tf.convert_to_tensor(self.matrix)

    def reset_state(self):
        self.matrix.assign(tf.zeros_like(self.matrix))
