"""What a task means: the predictions a model's logits stand for, and the default metrics.

Every module that turns logits into classes, probabilities or "right or wrong" asks here,
so the rule is written once: one logit means two classes, the second when the logit is
> 0 (sigmoid); several logits mean the arg-max (softmax).
"""

import keras
import tensorflow as tf

CLASSIFYING = ("classification", "binary")


def classifies(task: str) -> bool:
    """Whether outputs of this task are classes (a confusion matrix, a prediction grid)."""
    return task in CLASSIFYING


def class_count(num_outputs: int) -> int:
    """Classes a classifying output of this width chooses from: one logit means two."""
    return max(2, num_outputs)


def predicted_classes(logits: tf.Tensor) -> tf.Tensor:
    """The class index (int64, one per example) that classifying logits predict."""
    if logits.shape[-1] == 1:
        return tf.cast(tf.reshape(logits, [-1]) > 0.0, tf.int64)
    return tf.argmax(logits, axis=-1)


def probabilities(logits: tf.Tensor) -> tf.Tensor:
    """[examples, classes] probabilities of classifying logits: a softmax, or for one logit
    the two columns 1 - sigmoid and sigmoid."""
    if logits.shape[-1] == 1:
        positive = tf.sigmoid(logits)
        return tf.concat([1.0 - positive, positive], axis=-1)
    return tf.nn.softmax(logits, axis=-1)


def correct(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per example: do these classifying logits give their label?"""
    return tf.equal(predicted_classes(logits), tf.cast(tf.reshape(labels, [-1]), tf.int64))


def all_correct(heads: list[str], labels: dict, outputs: dict) -> tf.Tensor:
    """Per example: is every head named in `heads` right at once?"""
    right = [correct(labels[name], outputs[name]) for name in heads]
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

    Takes classifying logits. Its variable sums over replicas, so under a strategy it
    counts every example once.
    """

    def __init__(self, num_outputs: int, name="confusion_matrix", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = class_count(num_outputs)
        self.matrix = self.add_variable(shape=(self.num_classes, self.num_classes),
                                        initializer="zeros", dtype="float32",
                                        aggregation="sum", name="matrix")

    def update_state(self, labels, logits, sample_weight=None):
        self.matrix.assign_add(tf.math.confusion_matrix(
            tf.cast(tf.reshape(labels, [-1]), tf.int64), predicted_classes(logits),
            self.num_classes, dtype=tf.float32))

    def result(self):
        return tf.convert_to_tensor(self.matrix)

    def reset_state(self):
        self.matrix.assign(tf.zeros_like(self.matrix))
