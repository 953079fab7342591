"""The metrics a task gets when Experiment.metrics is not set."""

import keras

from framework.data import DatasetInfo


def default_metrics(info: DatasetInfo) -> list[keras.metrics.Metric]:
    """Accuracy for classification (models output logits), mean absolute error otherwise."""
    if info.task == "classification":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if info.task == "binary":
        return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
    return [keras.metrics.MeanAbsoluteError(name="mean_absolute_error")]
