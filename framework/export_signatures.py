"""The SavedModel of an export: its signatures, and what they return for each output.

    serving_default(features: float32 [batch, *input_shape])
    serving_image_bytes(image_bytes: string [batch])     datasets with a `decode` only

Both return, for a model with one output:

    probabilities  float32 [batch, classes]: the softmax of the logits; for one logit
                   (binary), [batch, 1]: the sigmoid, the probability of class 1
    class_index    int64 [batch]: the predicted class (framework.tasks' rule)
    class_name     string [batch]: its name
    predictions    float32 [batch, outputs]: instead of the three above, for regression

and for a multi-head model the same per head, named `<head>_probabilities` and so on.
Outputs are float32 whatever precision the model computes in. The image signature decodes,
resizes and scales each image with the dataset's own `decode`, traced into the graph, so
a client sends file contents and needs none of this code.
"""

import dataclasses

import keras
import tensorflow as tf
from absl import logging

from framework import capabilities, tasks
from framework.data import DatasetInfo
from framework.precision import float32_outputs

DEFAULT_SIGNATURE = "serving_default"
IMAGE_BYTES_SIGNATURE = "serving_image_bytes"
FEATURES = "features"  # the input of serving_default
IMAGE_BYTES = "image_bytes"  # the input of serving_image_bytes


@dataclasses.dataclass(frozen=True)
class Output:
    """One output of a model as an export serves it.

    head: the head's name for a multi-head model; None for a model's one output.
    task: the dataset's task for it ('classification', 'binary' or 'regression').
    class_names: the names of its classes, if the dataset gave them.
    """

    head: str | None
    task: str
    class_names: tuple[str, ...] | None = None

    def key(self, name: str) -> str:
        """The signature's name for `name` ('probabilities', ...) of this output."""
        return name if self.head is None else f"{self.head}_{name}"

    def names(self, classes: int) -> list[str]:
        """The names of `classes` classes: class_names, or the indices as text when there
        are none or they do not fit (a head configured wider than its classes)."""
        if self.class_names and len(self.class_names) == classes:
            return list(self.class_names)
        return [str(i) for i in range(classes)]


def model_outputs(model: keras.Model, info: DatasetInfo,
                  saved_info: dict | None = None) -> list[Output]:
    """The outputs of `model`, trained on data described by `info`: one per head of a
    multi-head model (framework.capabilities), else one. Class names come from
    `saved_info` (the dataset_info.json saved with the run: the names the model was
    trained with) where it has them, else from `info`."""
    saved = saved_info or dataclasses.asdict(info)
    heads = capabilities.heads(model)
    head_infos = [head_info for _, head_info in heads] if heads else list(info.heads)
    if not head_infos:
        return [Output(None, info.task, _tuple(saved.get("class_names")) or info.class_names)]
    saved_heads = {head["name"]: head for head in saved.get("heads") or []}
    return [Output(head.name, head.task,
                   _tuple(saved_heads.get(head.name, {}).get("class_names")) or head.class_names)
            for head in head_infos]


def _tuple(names) -> tuple[str, ...] | None:
    return tuple(names) if names else None


def class_names(outputs: list[Output]):
    """What class_names.json holds: the one output's names (None when it does not
    classify), or {head: names or None} for a multi-head model."""
    def names(output):
        return list(output.class_names) if output.class_names and tasks.classifies(
            output.task) else None
    if len(outputs) == 1 and outputs[0].head is None:
        return names(outputs[0])
    return {output.head: names(output) for output in outputs}


def serving_outputs(returned, outputs: list[Output]) -> dict[str, tf.Tensor]:
    """The signature's outputs (see the module's docstring) for what the model returned:
    its tensor, or {head: tensor}. Traceable: static shapes decide, no Python control
    flow on tensors."""
    values = float32_outputs(returned)  # probabilities from bfloat16 logits are coarse
    served = {}
    for output in outputs:
        logits = values if output.head is None else values[output.head]
        if not tasks.classifies(output.task):
            served[output.key("predictions")] = logits
            continue
        probabilities = tasks.probabilities(logits)
        if logits.shape[-1] == 1:  # tasks gives (1 - p, p) for one logit; p is the answer
            probabilities = probabilities[:, 1:]
        index = tasks.predicted_classes(logits)
        names = output.names(tasks.class_count(logits.shape[-1]))
        served[output.key("probabilities")] = probabilities
        served[output.key("class_index")] = index
        served[output.key("class_name")] = tf.gather(tf.constant(names), index)
    return served


def write_saved_model(model: keras.Model, outputs: list[Output], input_shape: tuple,
                      decode, path: str) -> list[str]:
    """Writes `model` as a SavedModel at `path` with Keras's ExportArchive: serving_default
    and, when `decode` (a Dataset's) is given, serving_image_bytes. Returns the
    signatures' names."""
    def serve(features):
        return serving_outputs(model(features, training=False), outputs)

    archive = keras.export.ExportArchive()
    # No archive.track(model): on TensorFlow it stores every weight a second time, beside
    # the variables the endpoints capture, which are all a SavedModel needs (Keras issue
    # 23553). Tracking matters only for lookup tables, which these models do not have.
    archive.add_endpoint(DEFAULT_SIGNATURE, serve, input_signature=[
        tf.TensorSpec((None, *input_shape), tf.float32, name=FEATURES)])
    signatures = [DEFAULT_SIGNATURE]
    if decode is not None:
        example = tf.TensorSpec(input_shape, tf.float32)

        def serve_image_bytes(image_bytes):
            features = tf.map_fn(lambda one: tf.cast(decode(one), tf.float32), image_bytes,
                                 fn_output_signature=example)
            return serve(features)

        archive.add_endpoint(IMAGE_BYTES_SIGNATURE, serve_image_bytes, input_signature=[
            tf.TensorSpec((None,), tf.string, name=IMAGE_BYTES)])
        signatures.append(IMAGE_BYTES_SIGNATURE)
    # Writing a SavedModel sets absl's logger to WARNING for the rest of the process;
    # whoever set it (--verbose, a test's log capture) keeps their level.
    absl_logger = logging.get_absl_logger()
    level = absl_logger.level
    try:
        archive.write_out(path, verbose=False)
    finally:
        absl_logger.setLevel(level)
    return signatures


def keras_file_model(model: keras.Model, input_shape: tuple) -> keras.Model:
    """What the .keras file holds: `model` itself when its outputs are float32; else (a
    mixed-precision model) `model` under float32 identity layers, so the file's outputs
    are float32 too. Outputs stay logits, which is what training on from the file needs."""
    inputs = keras.Input(input_shape, dtype="float32", name=FEATURES)
    symbolic = model(inputs)
    if all(tensor.dtype == "float32" for tensor in tf.nest.flatten(symbolic)):
        return model

    def as_float32(name, tensor):
        return keras.layers.Activation("linear", dtype="float32", name=f"{name}_float32")(tensor)
    outputs = ({name: as_float32(name, tensor) for name, tensor in symbolic.items()}
               if isinstance(symbolic, dict) else as_float32("logits", symbolic))
    return keras.Model(inputs, outputs, name=f"{model.name}_float32_outputs")


def outside_keras(model: keras.Model) -> list[str]:
    """Modules other than Keras's that model.keras names (custom layers or objects): a
    process loading the file must import them first. Empty for the built-in models."""
    found = set()

    def walk(value):
        if isinstance(value, dict):
            module = value.get("module")
            if isinstance(module, str) and "class_name" in value and \
                    not module.startswith("keras"):
                found.add(module)
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
    walk(keras.saving.serialize_keras_object(model))
    return sorted(found)
