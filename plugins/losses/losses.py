"""Keras's losses, returning one loss per example (the loop reduces over the global batch)."""

import keras

from framework.registry import register


@register.loss
def sparse_categorical_crossentropy(from_logits=True):
    """Integer class labels against logits (or probabilities with from_logits=False)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits, reduction=None)


@register.loss
def categorical_crossentropy(from_logits=True, label_smoothing=0.0):
    """One-hot labels against logits (or probabilities with from_logits=False)."""
    return keras.losses.CategoricalCrossentropy(
        from_logits=from_logits, label_smoothing=label_smoothing, reduction=None)


@register.loss
def binary_crossentropy(from_logits=True, label_smoothing=0.0):
    """0/1 labels against one logit per example (or a probability)."""
    return keras.losses.BinaryCrossentropy(
        from_logits=from_logits, label_smoothing=label_smoothing, reduction=None)


@register.loss
def mean_squared_error():
    """Squared error averaged over the output axis: one value per example."""
    return keras.losses.MeanSquaredError(reduction=None)


@register.loss
def crossentropy(label_smoothing=0.0):
    """Cross-entropy that fits the model's outputs (logits): one output per example is a
    binary task (0/1 labels), several a classification (integer class labels)."""
    binary = keras.losses.BinaryCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction=None)
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def loss(labels, logits):
        # Decided from the static shape while tracing: no cost per step.
        return binary(labels, logits) if logits.shape[-1] == 1 else sparse(labels, logits)

    return loss
