"""--mode=predict: the top classes, with probabilities, of examples read from files."""

import json
import os

import tensorflow as tf

from framework.errors import UserError
from framework.experiment import DATASET_INFO_FILE, Experiment


def predict_files(experiment: Experiment, path: str, top_k: int = 3):
    """[(file, [(class name, probability), ...])] for a file or every file in a folder.

    The experiment must be built with a restored checkpoint. Class names are the ones
    saved with the run (model_dir/dataset_info.json), falling back to the dataset's.
    """
    load_file = experiment.dataset.load_file
    if load_file is None:
        raise UserError(f"Dataset '{experiment.info.name}' cannot read examples from files, "
                        "so --mode=predict is not available for it.")
    files = _files(path)
    class_names = _class_names(experiment)
    features = tf.stack([load_file(f) for f in files])
    outputs = experiment.model(features, training=False)
    if experiment.info.task == "binary":  # one logit: the probability of the second class
        positive = tf.sigmoid(outputs)
        probabilities = tf.concat([1.0 - positive, positive], axis=-1)
    else:
        probabilities = tf.nn.softmax(outputs, axis=-1)
    values, indices = tf.math.top_k(probabilities, k=min(top_k, probabilities.shape[-1]))
    return [(file, [(class_names[i], float(p)) for i, p in zip(row_indices, row_values)])
            for file, row_indices, row_values in zip(files, indices.numpy(), values.numpy())]


def _files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, name) for name in os.listdir(path)
                       if os.path.isfile(os.path.join(path, name)))
        if files:
            return files
    raise UserError(f"--predict '{path}' is neither a file nor a folder with files in it.")


def _class_names(experiment: Experiment) -> list[str]:
    saved = os.path.join(experiment.model_dir, DATASET_INFO_FILE)
    if tf.io.gfile.exists(saved):
        with tf.io.gfile.GFile(saved) as f:
            names = json.load(f).get("class_names")
        if names:
            return names
    return list(experiment.info.class_names or range(experiment.info.num_outputs))
