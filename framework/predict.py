"""--mode=predict: the top classes, with probabilities, of examples read from files."""

import dataclasses
import json
import os

import tensorflow as tf

from framework.errors import UserError
from framework.experiment import DATASET_INFO_FILE, Experiment
from framework.loop import float32_outputs


def predict_files(experiment: Experiment, path: str, top_k: int = 3):
    """[(file, top)] for a file or every file in a folder.

    top is [(class name, probability), ...], best first; for a multi-head model it is
    {head: [(class name, probability), ...]}. The experiment must be built with a restored
    checkpoint. Class names are the ones saved with the run (model_dir/dataset_info.json),
    falling back to the dataset's.
    """
    load_file = experiment.dataset.load_file
    if load_file is None:
        raise UserError(f"Dataset '{experiment.info.name}' cannot read examples from files, "
                        "so --mode=predict is not available for it.")
    files = _files(path)
    info = _saved_info(experiment)
    outputs = float32_outputs(
        experiment.model(tf.stack([load_file(f) for f in files]), training=False))
    if not info.get("heads"):
        return list(zip(files, _top(info, outputs, top_k)))
    per_head = {head["name"]: _top(head, outputs[head["name"]], top_k) for head in info["heads"]}
    return [(file, {head: tops[i] for head, tops in per_head.items()})
            for i, file in enumerate(files)]


def _top(info: dict, outputs: tf.Tensor, top_k: int) -> list:
    """Per example, the top_k (class name, probability) of one output (task in `info`)."""
    if info["task"] == "binary":  # one logit: the probability of the second class
        positive = tf.sigmoid(outputs)
        probabilities = tf.concat([1.0 - positive, positive], axis=-1)
    else:
        probabilities = tf.nn.softmax(outputs, axis=-1)
    names = info.get("class_names") or [str(i) for i in range(probabilities.shape[-1])]
    values, indices = tf.math.top_k(probabilities, k=min(top_k, probabilities.shape[-1]))
    return [[(names[i], float(p)) for i, p in zip(row_indices, row_values)]
            for row_indices, row_values in zip(indices.numpy(), values.numpy())]


def _files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, name) for name in os.listdir(path)
                       if os.path.isfile(os.path.join(path, name)))
        if files:
            return files
    raise UserError(f"--predict '{path}' is neither a file nor a folder with files in it.")


def _saved_info(experiment: Experiment) -> dict:
    """The dataset info saved with the run (its class names), else the dataset's."""
    saved = os.path.join(experiment.model_dir, DATASET_INFO_FILE)
    if tf.io.gfile.exists(saved):
        with tf.io.gfile.GFile(saved) as f:
            return json.load(f)
    return dataclasses.asdict(experiment.info)
