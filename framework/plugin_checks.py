"""Plugins built with checks: each failure is one UserError that names the plugin and the fix.

Is each setting given a plugin of its kind? Does each plugin build, and give what its kind
must return (a dataset: unbatched examples that match its info)? Does the model take the
dataset's features, the loss its outputs and labels, and is every output as wide as the
data's classes? All checked before anything is written (the last two on two zero examples
shaped like the data), so a mistake is one clear message at start instead of an error deep
inside a traced step, or a run that trains on nonsense.
"""

from collections.abc import Callable

import keras
import tensorflow as tf

from framework import registry
from framework.data import Dataset, DatasetInfo
from framework.errors import UserError, first_line
from framework.objective import Objective, multi_head_hint
from framework.registry import KINDS


def plugin_name(plugin) -> str:
    """How messages name a plugin: 'cnn', or the object as it was given."""
    return f"'{getattr(plugin, '__name__', None) or repr(plugin)}'"


# Where a plugin of each kind belongs, named when it was bound somewhere else.
_BELONGS = {"dataset": "Experiment.dataset", "model": "Experiment.model",
            "loss": "Experiment.loss", "optimizer": "Experiment.optimizer",
            "strategy": "Experiment.strategy", "hook": "Experiment.hooks",
            "schedule": "an optimizer's learning_rate (optimizers.adam.learning_rate = ...)"}


def check_kind(kind: str, plugin, setting: str | None = None) -> None:
    """Raises UserError when `plugin`, bound as Experiment.<setting> (default: <kind>; a
    dotted setting such as 'models.multi_head.trunk' is named as it is), is a plugin of
    another kind, or a plugin's name written as a string. Checked before the plugin is
    called, so that the message names both kinds instead of quoting the missing argument or
    the odd return value that calling it gives."""
    setting = setting if setting and "." in setting else f"Experiment.{setting or kind}"
    known = ", ".join(f"@{p.gin_name}" for p in sorted(registry.plugins(kind).values(),
                                                      key=lambda p: p.name)) or "none"
    needs = f"{setting} needs {_a(kind)} plugin (known: {known})"
    if isinstance(plugin, str):
        named = registry.find(plugin)
        example = f"@{named.gin_name}" if named and named.kind == kind else f"@{KINDS[kind]}.NAME"
        raise UserError(f"{setting} got the string {plugin!r}; {needs}, bound with @: "
                        f"e.g. {example}.")
    found = registry.plugin_of(plugin)
    if found is not None and found.kind != kind:
        raise UserError(f"{setting} got @{found.gin_name}, which is {_a(found.kind)} plugin; "
                        f"{needs}. {_a(found.kind).capitalize()} plugin belongs in "
                        f"{_BELONGS.get(found.kind, 'another setting')}.")


def _a(word: str) -> str:
    return f"{'an' if word[0].lower() in 'aeiou' else 'a'} {word}"


def check_kinds(plugins: dict, hooks: list) -> None:
    """check_kind for every plugin setting: plugins {kind: plugin or None} (a list of
    datasets allowed), hooks the hook plugins."""
    for kind, bound in plugins.items():
        for plugin in bound if isinstance(bound, (list, tuple)) else [bound]:
            if plugin is not None:
                check_kind(kind, plugin)
    for hook in hooks:
        check_kind("hook", hook, setting="hooks")


def build_plugin(kind: str, plugin, expected_type: type, *context,
                 info: DatasetInfo | None = None, setting: str | None = None):
    """`plugin` (bound as Experiment.<setting>, by default <kind>) checked to be of `kind`,
    built with `context`, and checked to be an `expected_type` (a dataset: check_dataset).
    info: the data a model is built for, named when it cannot be."""
    check_kind(kind, plugin, setting)
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
    if expected_type is Dataset:
        check_dataset(value, plugin_name(plugin))
    elif not isinstance(value, expected_type):
        raise UserError(f"Experiment.{setting or kind} = {plugin_name(plugin)} gave a "
                        f"{type(value).__name__}, but a {kind} plugin must return "
                        f"{_DESCRIPTIONS.get(expected_type, _a(expected_type.__name__))}.")
    return value


_DESCRIPTIONS = {Callable: "a callable(labels, outputs)",
                 tf.distribute.Strategy: "a tf.distribute.Strategy"}


_DATASET_EXAMPLE = (
    "A dataset plugin returns framework.data.Dataset(train=..., eval=..., "
    "info=DatasetInfo(...)), e.g.\n"
    "    examples = tf.data.Dataset.from_tensor_slices((images, labels))  # unbatched\n"
    "    return Dataset(train=examples, eval=None, info=DatasetInfo(name='mine',\n"
    "        input_shape=(28, 28, 1), task='classification', num_outputs=10))")


def check_dataset(dataset, name: str) -> None:
    """Raises UserError unless dataset plugin `name` returned a framework.data.Dataset of
    unbatched (features, labels) examples of fixed shapes, features shaped as its info says.
    """
    source = f"Dataset plugin {name}"
    if not isinstance(dataset, Dataset):
        what = ("a bare tf.data.Dataset" if isinstance(dataset, tf.data.Dataset)
                else f"a {type(dataset).__name__}")
        raise UserError(f"{source} returned {what}, not a framework.data.Dataset. "
                        f"{_DATASET_EXAMPLE}")
    for field, value, allowed in (("train", dataset.train, (tf.data.Dataset,)),
                                  ("eval", dataset.eval, (tf.data.Dataset, type(None))),
                                  ("info", dataset.info, (DatasetInfo,))):
        if not isinstance(value, allowed):
            raise UserError(f"{source} returned a Dataset whose {field} is a "
                            f"{type(value).__name__}. {_DATASET_EXAMPLE}")
    for split, examples in (("train", dataset.train), ("eval", dataset.eval)):
        if examples is not None:
            _check_examples(source, split, examples.element_spec, dataset.info.input_shape)


def _check_examples(source: str, split: str, spec, input_shape: tuple) -> None:
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise UserError(f"{source}: its {split} examples must be (features, labels) pairs; "
                        f"they are {spec}. {_DATASET_EXAMPLE}")
    features, labels = spec
    if not isinstance(features, tf.TensorSpec):
        raise UserError(f"{source}: its {split} features must be one tensor per example, "
                        f"got {features}.")
    shape, expected = features.shape, tf.TensorShape(input_shape)
    if shape.rank == expected.rank + 1 and shape[1:].is_compatible_with(expected):
        raise UserError(
            f"{source} returns batched {split} examples: features of shape {shape} where its "
            f"info says one example is {tuple(input_shape)}. Return unbatched examples (drop "
            "the .batch(...)): the framework shuffles and batches them itself "
            "(Experiment.batch_size).")
    if shape != expected:
        raise UserError(
            f"{source} gives {split} features of shape {shape}, but its info says "
            f"input_shape={tuple(input_shape)}. Make them agree: every example must have the "
            "shape the info gives (tf.image.resize, tf.ensure_shape).")
    for label in tf.nest.flatten(labels):
        if not getattr(label, "shape", tf.TensorShape(None)).is_fully_defined():
            raise UserError(f"{source} gives {split} labels of shape {label.shape}: each "
                            "example's labels must have a fixed shape (unbatched examples; "
                            "the framework batches them).")


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
    _check_output_widths(outputs, model_name, info)
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


def _check_output_widths(outputs, model_name: str, info: DatasetInfo) -> None:
    """Raises UserError when an output of one vector per example is not as wide as the data
    it predicts (classes, or 1 for a binary task): a loss takes too many logits silently,
    too few fail only on the first batch with a large label. Other shapes are left to the
    loss check."""
    if not info.heads and not isinstance(outputs, dict):
        checks = [(f"Model {model_name}", outputs, info.task, info.num_outputs,
                   "a model plugin reads it as info.num_outputs")]
    elif info.heads and isinstance(outputs, dict):
        checks = [(f"Head '{head.name}' of model {model_name}", outputs[head.name], head.task,
                   head.num_outputs, f"leave {head.name}/Head.outputs unset, and it is")
                  for head in info.heads if head.name in outputs]
    else:
        checks = []  # objective_for has said what is wrong
    for who, output, task, wanted, how in checks:
        width = output.shape[-1]
        if output.shape.rank == 2 and width != wanted:
            what = {"classification": f"{wanted} classes (one logit each)",
                    "binary": "a binary task (one logit)"}.get(
                        task, f"{wanted} target value{'s' * (wanted != 1)}")
            raise UserError(
                f"{who} outputs {width} values per example, but dataset '{info.name}' "
                f"{'labels it with' if info.heads else 'has'} {what}. Fix: make its output "
                f"layer {wanted} wide ({how}).")


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
