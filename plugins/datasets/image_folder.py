"""Images in class folders: directory/<class>/*.jpg, optionally under train/ and validation/."""

import pathlib

import numpy as np
import tensorflow as tf
from absl import logging

from framework import verified_files
from framework.data import Dataset, DatasetInfo
from framework.errors import UserError, described, reading
from framework.registry import register
from plugins.datasets.image_augmentation import augmenter

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The first bytes of each format; a file without them cannot be an image of that format.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")


@register.dataset
def image_folder(directory=None, image_size=(150, 150), validation_fraction=0.2,
                 split_seed=0, flip=False, rotation=0.0, zoom=0.0, contrast=0.0):
    """Images in one sub-folder per class, resized to image_size, scaled to [0, 1].

    Uses directory/train and directory/validation when both exist, else holds out a
    seeded validation_fraction of each class. Two classes give a binary task (one logit),
    more a classification. flip/rotation/zoom/contrast augment training images only
    (see image_augmentation.augmenter). Files that are not images are skipped with a warning;
    every image is decoded once here (once per change to the folder: verified_files), and a
    damaged one (truncated, corrupt) is a UserError naming it, so that the run fails at its
    start rather than on the batch that holds it.
    """
    root = _existing_directory(directory)
    if (root / "train").is_dir() and (root / "validation").is_dir():
        class_names = _class_names(root / "train")
        train_files = _files(root / "train", class_names)
        eval_files = _files(root / "validation", class_names)
    else:
        class_names = _class_names(root)
        train_files, eval_files = _split(_files(root, class_names), validation_fraction,
                                         split_seed)
    fingerprint = _fingerprint(train_files, eval_files, image_size)
    _check_decodable([path for path, _ in train_files + eval_files], root, fingerprint)
    binary = len(class_names) == 2
    info = DatasetInfo(
        name=f"image_folder({root.name})", input_shape=(*image_size, 3),
        task="binary" if binary else "classification",
        num_outputs=1 if binary else len(class_names), class_names=tuple(class_names),
        train_size=len(train_files), eval_size=len(eval_files))
    logging.info("image_folder %s: classes %s; %d training and %d validation images",
                 root, ", ".join(class_names), len(train_files), len(eval_files))
    return Dataset(
        train=_decoded(train_files, image_size, binary),
        eval=_decoded(eval_files, image_size, binary) if eval_files else None,
        info=info,
        augment=augmenter(flip=flip, rotation=rotation, zoom=zoom, contrast=contrast),
        fingerprint=fingerprint,
        decode=lambda image_bytes: decode_image(image_bytes, image_size))


def _fingerprint(train_files, eval_files, image_size) -> str:
    """Changes when any file, its size or time, its label, the split or the size does."""
    return verified_files.fingerprint(
        [path for path, _ in train_files + eval_files], tuple(image_size),
        [label for _, label in train_files], [label for _, label in eval_files])


def decode_image(image_bytes, image_size):
    """One encoded image (JPEG, PNG, GIF, BMP) as float [height, width, 3] in [0, 1],
    resized to image_size: what training reads (load_image) and exports serve."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, image_size)
    return tf.ensure_shape(image, (*image_size, 3))


def load_image(path, image_size):
    """One image file, as decode_image gives it."""
    return decode_image(tf.io.read_file(path), image_size)


def _existing_directory(directory) -> pathlib.Path:
    if not directory:
        raise UserError("image_folder needs a folder of images: bind "
                        "image_folder.directory = '/path/to/images' (one sub-folder per class).")
    root = pathlib.Path(directory).expanduser()
    if not root.is_dir():
        raise UserError(f"image_folder.directory '{root}' does not exist or is not a folder.")
    return root


def _class_names(root: pathlib.Path) -> list[str]:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < 2:
        raise UserError(f"{root} needs one sub-folder per class, at least two; found "
                        f"{names or 'none'}.")
    return names


def _files(root: pathlib.Path, class_names: list[str]) -> list[tuple[str, int]]:
    """(path, class index) of every file that starts like an image, sorted; names the files
    it skips."""
    files, skipped = [], []
    for index, name in enumerate(class_names):
        folder = root / name
        candidates = sorted(p for p in folder.glob("*") if p.suffix.lower() in EXTENSIONS) \
            if folder.is_dir() else []
        if not candidates:
            raise UserError(f"Class folder {folder} has no images "
                            f"({', '.join(EXTENSIONS)}). Add some, or remove the folder.")
        for path in candidates:
            with reading(path, "Fix: make it readable, or delete it."), \
                    open(path, "rb") as handle:
                signature = handle.read(4)
            if signature.startswith(_SIGNATURES):
                files.append((str(path), index))
            else:
                skipped.append(path)
                logging.warning("Skipping %s: not a JPEG, PNG, GIF or BMP image.", path)
    if skipped:
        logging.warning("Skipped %d file(s) under %s that are not images.", len(skipped), root)
    return files


def _check_decodable(paths: list[str], root: pathlib.Path, fingerprint: str,
                     shown: int = 5) -> None:
    """Decodes every image once, as load_image does, unless verified_files says the folder
    with this fingerprint did; raises UserError naming the damaged ones (the first `shown`
    of them) and the fix.

    Decoding lazily in tf.data would fail (or, with ignore_errors, silently drop the file
    and leave the split's size unknown) only when training reaches the file, after the run
    has written to model_dir. The first check costs a decode per image (about 0.3 ms for
    64x64, 2.5 ms for 300x300 on one core): what a training run spent before counting
    the examples of a split whose size ignore_errors had made unknown.
    """
    if verified_files.is_verified(fingerprint):
        return
    damaged = []
    for path in paths:
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except Exception as error:  # pylint: disable=broad-except  (any failure: damaged)
            damaged.append(f"{path} ({described(error)})")
    if damaged:
        listed = "; ".join(damaged[:shown]) + (
            f"; and {len(damaged) - shown} more" if len(damaged) > shown else "")
        raise UserError(f"{len(damaged)} image file(s) under {root} are damaged and cannot be "
                        f"decoded: {listed}. Fix: delete them, or replace them with intact "
                        "copies.")
    verified_files.mark_verified(fingerprint)


def _split(files, validation_fraction, seed):
    """A seeded hold-out of `validation_fraction` of each class."""
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for label in sorted({label for _, label in files}):
        of_class = [f for f in files if f[1] == label]
        order = rng.permutation(len(of_class))
        count = int(round(validation_fraction * len(of_class)))
        held_out += [of_class[i] for i in sorted(order[:count])]
        train += [of_class[i] for i in sorted(order[count:])]
    return train, held_out


def _decoded(files, image_size, binary) -> tf.data.Dataset:
    paths = [path for path, _ in files]
    labels = np.array([label for _, label in files], np.float32 if binary else np.int64)
    if binary:
        labels = labels[:, np.newaxis]

    def load(path, label):
        return load_image(path, image_size), label

    examples = tf.data.Dataset.from_tensor_slices((paths, labels))
    # Every file decodes (_check_decodable), so the split keeps its known size.
    return examples.map(load, num_parallel_calls=tf.data.AUTOTUNE)
