"""Fashion-MNIST and MNIST from their IDX files (the format both are distributed in)."""

import gzip
import os
import pathlib

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from framework.data import Dataset, DatasetInfo
from framework.errors import UserError
from framework.registry import register

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "eval": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: pathlib.Path) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into an array of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file (bad magic number).")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_file(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _has_all_files(directory: pathlib.Path) -> bool:
    return all(_find_file(directory, stem) for pair in _FILES.values() for stem in pair)


def locate(name: str, data_dir: str | None, env_var: str, system_dirs: list[str],
           download, install_hint: str = "") -> pathlib.Path:
    """The directory holding the four IDX files of `name`.

    An explicit `data_dir` must hold them (never a silent fall-back elsewhere); otherwise
    $env_var, then `system_dirs`, then `download()` are tried in order.
    """
    if data_dir:
        directory = pathlib.Path(data_dir).expanduser()
        if _has_all_files(directory):
            return directory
        raise UserError(
            f"data_dir '{directory}' does not hold the {name} IDX files "
            f"({', '.join(s for pair in _FILES.values() for s in pair)}, gzipped or not). "
            f"Point {name}.data_dir at the folder that has them, or unset it to search "
            f"${env_var} and {', '.join(system_dirs)}."
        )
    candidates = [os.environ.get(env_var)] + system_dirs
    for candidate in filter(None, candidates):
        directory = pathlib.Path(candidate).expanduser()
        if _has_all_files(directory):
            return directory
    try:
        return download()
    except Exception as error:  # pylint: disable=broad-except  (offline, proxy, ...)
        logging.info("Downloading %s failed: %s", name, error)
    raise UserError(
        f"Cannot find the {name} data. Looked in ${env_var}, {', '.join(system_dirs)} and "
        f"tried Keras's downloader (offline?). Fix: {install_hint}download the four IDX "
        f"files and set {name}.data_dir or ${env_var} to their folder."
    )


def _keras_download(origin_folder: str, cache_subdir: str) -> pathlib.Path:
    """Fetches the four files with Keras's downloader into ~/.keras/datasets/<subdir>."""
    path = None
    for stem in (s for pair in _FILES.values() for s in pair):
        path = keras.utils.get_file(stem + ".gz", origin=origin_folder + stem + ".gz",
                                    cache_subdir=cache_subdir)
    return pathlib.Path(path).parent


def idx_dataset(name, directory, class_names) -> Dataset:
    """Images scaled to [0, 1] with a channel axis, integer labels."""
    splits = {}
    for split, (images_stem, labels_stem) in _FILES.items():
        images = read_idx(_find_file(directory, images_stem))
        labels = read_idx(_find_file(directory, labels_stem)).astype(np.int64)
        images = (images.astype(np.float32) / 255.0)[..., np.newaxis]
        splits[split] = tf.data.Dataset.from_tensor_slices((images, labels))
    info = DatasetInfo(
        name=name, input_shape=(28, 28, 1), task="classification",
        num_outputs=len(class_names), class_names=tuple(class_names),
        train_size=int(splits["train"].cardinality()),
        eval_size=int(splits["eval"].cardinality()),
    )
    logging.info("%s: %d training and %d evaluation images from %s",
                 name, info.train_size, info.eval_size, directory)
    return Dataset(train=splits["train"], eval=splits["eval"], info=info)


@register.dataset
def fashion_mnist(data_dir=None):
    """Fashion-MNIST: 60k/10k 28x28 grey images of 10 kinds of clothing.

    Looks in data_dir, $FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist (Debian's
    dataset-fashion-mnist), ~/.keras/datasets/fashion-mnist, then downloads with Keras.
    """
    directory = locate(
        "fashion_mnist", data_dir, "FASHION_MNIST_DIR",
        ["/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist"],
        lambda: _keras_download(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/", "fashion-mnist"),
        install_hint="`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or ",
    )
    return idx_dataset("fashion_mnist", directory, FASHION_MNIST_CLASSES)


@register.dataset
def mnist(data_dir=None):
    """MNIST handwritten digits: 60k/10k 28x28 grey images of the digits 0-9.

    Looks in data_dir, $MNIST_DIR, /usr/share/datasets/mnist, ~/.keras/datasets/mnist, then
    downloads the IDX files with Keras.
    """
    directory = locate(
        "mnist", data_dir, "MNIST_DIR",
        ["/usr/share/datasets/mnist", "~/.keras/datasets/mnist"],
        lambda: _keras_download("https://storage.googleapis.com/cvdf-datasets/mnist/", "mnist"),
    )
    return idx_dataset("mnist", directory, [str(digit) for digit in range(10)])
