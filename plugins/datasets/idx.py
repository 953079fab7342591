"""Fashion-MNIST and MNIST from their IDX files (the format both are distributed in)."""

import gzip
import os
import pathlib

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from framework.data import Dataset, DatasetInfo
from framework.errors import UserError, reading
from framework.registry import register
from plugins.datasets.image_augmentation import augmenter

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "eval": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: pathlib.Path, fix: str = "Fix: replace it with an intact copy.",
             ndim: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into an array of its stored shape.

    Raises UserError naming `path` and `fix` when the file is truncated, corrupt or not an
    unsigned-byte IDX file with `ndim` dimensions (gzip checks its CRC; the IDX header
    must account for every byte).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with reading(path, fix):
        with opener(path, "rb") as handle:
            data = handle.read()
        if len(data) < 4 or data[0] or data[1] or data[2] != 0x08:
            raise ValueError("not an unsigned-byte IDX file: bad magic number")
        stored_ndim = data[3]
        if ndim is not None and stored_ndim != ndim:
            raise ValueError(f"{stored_ndim} dimensions where {ndim} belong")
        shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big")
                      for i in range(stored_ndim))
        # reshape refuses a size that does not match the header: truncation, or a
        # damaged header.
        return np.frombuffer(data, np.uint8, offset=4 + 4 * stored_ndim).reshape(shape)


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


def idx_dataset(name, directory, class_names, package: str | None = None,
                validation_size: int = 0, augment=None) -> Dataset:
    """Images scaled to [0, 1] with a channel axis, integer labels; decodes image files
    (`decode`) as its examples are.

    validation_size: when above 0, the last that many training images are the evaluation
    split, and the test images are not used: what a search selects on, so that the test
    accuracy of what it picks stays an honest estimate.
    augment: the training images' augmentation (image_augmentation.augmenter), or None.

    Every file is checked as it is read (see read_idx): 28x28 images, one label per image,
    each naming one of `class_names`. A damaged file is a UserError that says how to get an
    intact one (`package`: the Debian package that installs `directory`, if one does).
    """
    fix = repair_hint(name, directory, package)
    splits = {}
    for split, (images_stem, labels_stem) in _FILES.items():
        images_path = _find_file(directory, images_stem)
        labels_path = _find_file(directory, labels_stem)
        images = read_idx(images_path, fix, ndim=3)
        if images.shape[1:] != (28, 28):
            raise UserError(f"{images_path} is damaged: its header says images of "
                            f"{images.shape[1:]} pixels, not 28x28. {fix}")
        labels = read_idx(labels_path, fix, ndim=1)
        if labels.size and labels.max() >= len(class_names):
            raise UserError(f"{labels_path} is damaged: it holds label {labels.max()}, but "
                            f"{name} has {len(class_names)} classes. {fix}")
        if len(labels) != len(images):
            raise UserError(f"{images_path} holds {len(images)} images but {labels_path} "
                            f"{len(labels)} labels: one of them is damaged. {fix}")
        images = (images.astype(np.float32) / 255.0)[..., np.newaxis]
        splits[split] = (images, labels.astype(np.int64))
    if not isinstance(validation_size, int) or not 0 <= validation_size < len(splits["train"][0]):
        raise UserError(f"{name}.validation_size must be an integer from 0 to "
                        f"{len(splits['train'][0]) - 1}, got {validation_size!r}.")
    if validation_size:
        images, labels = splits["train"]
        splits = {"train": (images[:-validation_size], labels[:-validation_size]),
                  "eval": (images[-validation_size:], labels[-validation_size:])}
    splits = {split: tf.data.Dataset.from_tensor_slices(arrays)
              for split, arrays in splits.items()}
    info = DatasetInfo(
        name=name, input_shape=(28, 28, 1), task="classification",
        num_outputs=len(class_names), class_names=tuple(class_names),
        train_size=int(splits["train"].cardinality()),
        eval_size=int(splits["eval"].cardinality()),
    )
    logging.info("%s: %d training and %d evaluation images from %s",
                 name, info.train_size, info.eval_size, directory)
    return Dataset(train=splits["train"], eval=splits["eval"], info=info, decode=decode,
                   augment=augment)


def decode(image_bytes):
    """One encoded image (PNG, JPEG, ...) as an example: grey [28, 28, 1] in [0, 1].

    The IDX images are stored as they are read here (grey bytes over 255), so a 28x28 grey
    PNG of one decodes to exactly that example. Larger images are shrunk, averaging the
    pixels under each (antialias); the datasets' images are light on a black background.
    """
    image = tf.io.decode_image(image_bytes, channels=1, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (28, 28), antialias=True)
    return tf.ensure_shape(image, (28, 28, 1))


def repair_hint(name: str, directory: pathlib.Path, package: str | None = None) -> str:
    """How to replace a damaged file of `directory`: reinstall the system package, let Keras
    download it again, or copy it afresh."""
    directory = pathlib.Path(directory).expanduser().resolve()
    if package and str(directory).startswith("/usr/share/datasets/"):
        return f"Fix: reinstall it (`apt-get install --reinstall {package}`)."
    if pathlib.Path("~/.keras/datasets").expanduser().resolve() in directory.parents:
        return "Fix: delete the file; the next run downloads it again."
    return (f"Fix: replace it with an intact copy (download it again), or point "
            f"{name}.data_dir at a folder with intact files.")


@register.dataset
def fashion_mnist(data_dir=None, validation_size=0, flip=False, shift=0.0):
    """Fashion-MNIST: 60k/10k 28x28 grey images of 10 kinds of clothing.

    validation_size: evaluate on the last that many training images instead of the test
    set (a search's selection split).
    flip, shift: augment training images with random left-right flips (clothes are
    symmetric) and moves of up to `shift` of their size (image_augmentation.augmenter).

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
    return idx_dataset("fashion_mnist", directory, FASHION_MNIST_CLASSES,
                       package="dataset-fashion-mnist", validation_size=validation_size,
                       augment=augmenter(flip=flip, shift=shift))


@register.dataset
def mnist(data_dir=None, validation_size=0):
    """MNIST handwritten digits: 60k/10k 28x28 grey images of the digits 0-9.

    validation_size: as fashion_mnist's.

    Looks in data_dir, $MNIST_DIR, /usr/share/datasets/mnist, ~/.keras/datasets/mnist, then
    downloads the IDX files with Keras.
    """
    directory = locate(
        "mnist", data_dir, "MNIST_DIR",
        ["/usr/share/datasets/mnist", "~/.keras/datasets/mnist"],
        lambda: _keras_download("https://storage.googleapis.com/cvdf-datasets/mnist/", "mnist"),
    )
    return idx_dataset("mnist", directory, [str(digit) for digit in range(10)],
                       validation_size=validation_size)
