"""Does the model take the dataset's features, and the loss its outputs and labels?

Checked before anything is written, on two zero examples shaped like the data, so a
mismatch is one clear message at start instead of an error deep inside a traced step.
"""

import keras
import tensorflow as tf

from framework.data import Dataset
from framework.errors import UserError, first_line


def check_model_fits_data(model: keras.Model, model_name: str, loss_fn, dataset: Dataset):
    """Raises UserError naming both shapes when the model, loss and data do not fit."""
    features_spec, labels_spec = dataset.train.element_spec
    features = tf.zeros((2, *features_spec.shape), features_spec.dtype)
    labels = tf.zeros((2, *labels_spec.shape), labels_spec.dtype)
    info = dataset.info
    data = (f"dataset '{info.name}' (features {tuple(features_spec.shape)}, labels "
            f"{tuple(labels_spec.shape)}, {info.num_outputs} outputs)")
    try:
        outputs = model(features, training=False)
    except Exception as error:  # pylint: disable=broad-except  (Keras raises many kinds)
        raise UserError(
            f"Model {model_name} cannot take the inputs of {data}; the model expects "
            f"{_input_shape(model)}. Keras said: {first_line(error)} Fix: choose a model for "
            "this data, or change the model's input shape."
        ) from error
    try:
        per_example = loss_fn(labels, outputs)
        found = f"shape {tuple(per_example.shape)}"
    except Exception as error:  # pylint: disable=broad-except
        per_example, found = None, first_line(error)
    if per_example is None or tuple(per_example.shape) != (2,):
        raise UserError(
            f"The loss cannot compare model {model_name} outputs of shape "
            f"{tuple(outputs.shape[1:])} with the labels of {data}: it must give one loss per "
            f"example, got {found}. Fix: a model with {info.num_outputs} outputs per example, "
            "or a loss that fits these labels."
        )


def _input_shape(model: keras.Model) -> str:
    try:
        return f"inputs of shape {tuple(model.input_shape[1:])}"
    except (AttributeError, ValueError):
        return "inputs of another shape"
