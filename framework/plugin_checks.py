"""Plugins built with checks: each failure is one UserError that names the plugin and the fix.

Does each plugin build, and give what its kind must return? Does the model take the
dataset's features, and the loss its outputs and labels? All checked before anything is
written (the last on two zero examples shaped like the data), so a mistake is one clear
message at start instead of an error deep inside a traced step.
"""

import keras
import tensorflow as tf

from framework import registry
from framework.data import Dataset, DatasetInfo
from framework.errors import UserError, first_line
from framework.objective import Objective, multi_head_hint


def plugin_name(plugin) -> str:
    """How messages name a plugin: 'cnn', or the object as it was given."""
    return f"'{getattr(plugin, '__name__', None) or repr(plugin)}'"


def build_plugin(kind: str, plugin, expected_type: type, *context,
                 info: DatasetInfo | None = None, setting: str | None = None):
    """`plugin` (bound as Experiment.<setting>, by default <kind>) built with `context`,
    checked to be an `expected_type`. info: the data a model is built for, named when it
    cannot be."""
    try:
        value = registry.build(plugin, *context)
    except (ValueError, TypeError) as error:
        if kind != "model":
            raise UserError(
                f"Building the {kind} {plugin_name(plugin)} failed: {first_line(error)} Fix "
                "its gin parameters (`python -m framework.main --list_plugins` shows them "
                "with their defaults)."
            ) from error
        # Keras checks shapes while a model is assembled: a model that cannot take the
        # data's features usually fails here, before any data flows.
        raise UserError(
            f"Model {plugin_name(plugin)} cannot be built for dataset '{info.name}' "
            f"(features {info.input_shape}, {info.outputs_description()}). Keras said: "
            f"{first_line(error)} Fix: choose a model for this data, or change the model's "
            "input shape." + (" " + multi_head_hint(info) if info.heads else "")
        ) from error
    if not isinstance(value, expected_type):
        raise UserError(f"Experiment.{setting or kind} = {plugin_name(plugin)} gave a "
                        f"{type(value).__name__}, but a {kind} plugin must return a "
                        f"{expected_type.__name__}.")
    return value


def check_model_fits_data(model: keras.Model, model_name: str, objective: Objective,
                          dataset: Dataset):
    """Raises UserError naming both shapes when the model, loss and data do not fit."""
    features_spec, labels_spec = dataset.train.element_spec
    features = tf.zeros((2, *features_spec.shape), features_spec.dtype)
    labels = tf.nest.map_structure(lambda spec: tf.zeros((2, *spec.shape), spec.dtype),
                                   labels_spec)
    info = dataset.info
    data = (f"dataset '{info.name}' (features {tuple(features_spec.shape)}, labels "
            f"{_shapes(labels_spec)}, {info.outputs_description()})")
    try:
        outputs = model(features, training=False)
    except Exception as error:  # pylint: disable=broad-except  (Keras raises many kinds)
        raise UserError(
            f"Model {model_name} cannot take the inputs of {data}; the model expects "
            f"{_input_shape(model)}. Keras said: {first_line(error)} Fix: choose a model for "
            "this data, or change the model's input shape."
        ) from error
    try:
        per_example, _ = objective.losses(labels, outputs)
        found = f"shape {tuple(per_example.shape)}"
    except Exception as error:  # pylint: disable=broad-except
        per_example, found = None, first_line(error)
    if per_example is None or tuple(per_example.shape) != (2,):
        raise UserError(
            f"The loss cannot compare model {model_name} outputs of shape {_shapes(outputs)} "
            f"with the labels of {data}: it must give one loss per example, got {found}. "
            f"Fix: a model with {info.outputs_description()} per example, or a loss that "
            "fits these labels."
        )


def _shapes(structure) -> str:
    """(10,) for one tensor or spec; {'a': (10,), 'b': (3,)} for a dict of them
    (the batch dimension left out of tensors)."""
    shape = lambda x: tuple(x.shape[1:] if isinstance(x, tf.Tensor) else x.shape)  # noqa: E731
    if isinstance(structure, dict):
        return str({name: shape(value) for name, value in structure.items()})
    return str(shape(structure))


def _input_shape(model: keras.Model) -> str:
    try:
        return f"inputs of shape {tuple(model.input_shape[1:])}"
    except (AttributeError, ValueError):
        return "inputs of another shape"
