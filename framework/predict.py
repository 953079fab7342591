"""--mode=predict: the top classes, with probabilities, of examples read from files."""

import dataclasses
import os

import tensorflow as tf

from framework import tasks
from framework.assembly import Run
from framework.data import Dataset
from framework.errors import UserError, reading
from framework.precision import float32_outputs


def predict_files(run: Run, path: str, top_k: int = 3):
    """[(file, top)] for a file or every file in a folder.

    top is [(class name, probability), ...], best first; for a multi-head model it is
    {head: [(class name, probability), ...]}. `run` must have a checkpoint restored. Class
    names are the ones saved with the run (model_dir/dataset_info.json), falling back to the
    dataset's. A dataset without load_file, or a file it cannot read, is a UserError.
    """
    check_can_predict(run.datasets[0])
    files = _files(path)
    # The class names the model was trained with, else the dataset's.
    info = run.run_dir.saved_dataset_info() or dataclasses.asdict(run.info)
    # In a graph, as evaluation and exports run the model: in mixed precision, the same
    # model run eagerly rounds some bfloat16 results differently.
    model = tf.function(lambda features: run.model(features, training=False))
    outputs = float32_outputs(
        model(tf.stack([_load(run.datasets[0].load_file, f) for f in files])))
    if not info.get("heads"):
        return list(zip(files, _top(info, outputs, top_k)))
    per_head = {head["name"]: _top(head, outputs[head["name"]], top_k) for head in info["heads"]}
    return [(file, {head: tops[i] for head, tops in per_head.items()})
            for i, file in enumerate(files)]


def check_can_predict(dataset: Dataset) -> None:
    """Raises UserError unless `dataset` can read examples from files (its load_file)."""
    if dataset.load_file is None:
        raise UserError(
            f"--mode=predict reads each file with the dataset's load_file, and dataset "
            f"'{dataset.info.name}' has no load_file. Fix: predict with a dataset that has one "
            "(e.g. image_folder, captcha, fashion_mnist), or give your dataset plugin's "
            "Dataset a decode(image_bytes) -> features (load_file follows from it) or a "
            "load_file(path) -> features that prepares a file as its examples are prepared.")


def _load(load_file, path: str) -> tf.Tensor:
    with reading(path, "Fix: pass only intact files of the kind the dataset reads (for "
                       "images: JPEG, PNG, GIF or BMP)."):
        return load_file(path)


def _top(info: dict, outputs: tf.Tensor, top_k: int) -> list:
    """Per example, the top_k (class name, probability) of one output (names in `info`)."""
    probabilities = tasks.probabilities(outputs)
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
