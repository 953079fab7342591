"""Captcha images drawn by the PyPI `captcha` package, one head per character position."""

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import random
import time

import numpy as np
import tensorflow as tf
from absl import logging

from framework.data import Dataset, DatasetInfo, HeadInfo
from framework.errors import UserError, described
from framework.registry import register

# The package's default canvas: its fonts are sized for it. Images are drawn at this size
# and then shrunk to `image_size`.
CANVAS = (160, 60)
# Below this many images, drawing in this process beats starting worker processes.
PARALLEL_FROM = 2000


@register.dataset
def captcha(alphabet="0123456789", length=4, image_size=(30, 80), train_size=30000,
            eval_size=2000, seed=0, cache_dir=None, workers=None):
    """Grey captcha images of `length` characters from `alphabet`, labelled per position.

    Heads are 'char_0' ... 'char_{length-1}', each a classification over the alphabet.
    The texts come from `seed`; the package draws its noise from `secrets`, which no seed
    reaches, so the images are drawn once and kept in `cache_dir` (default
    $CAPTCHA_CACHE_DIR or ~/.cache/tf_loop_lab/captcha): later epochs and later runs read
    the same images. Drawing is spread over `workers` processes (default: one per CPU).
    """
    if len(set(alphabet)) != len(alphabet) or len(alphabet) < 2:
        raise UserError(f"captcha.alphabet must be at least two distinct characters, got "
                        f"{alphabet!r}.")
    if length < 1 or train_size < 1 or eval_size < 0:
        raise UserError("captcha.length and captcha.train_size must be positive and "
                        "captcha.eval_size not negative.")
    height, width = image_size
    try:
        import captcha as captcha_package  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise UserError("The captcha dataset needs the `captcha` package: pip install "
                        "captcha.") from error
    settings = dict(alphabet=alphabet, length=length, image_size=[height, width],
                    train_size=train_size, eval_size=eval_size, seed=seed, canvas=CANVAS,
                    package=getattr(captcha_package, "__version__", "?"))
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    directory = os.path.expanduser(cache_dir or os.environ.get("CAPTCHA_CACHE_DIR")
                                   or "~/.cache/tf_loop_lab/captcha")
    arrays = _cached_or_drawn(os.path.join(directory, f"captcha-{key}.npz"), alphabet, length,
                              (height, width), train_size, eval_size, seed, workers)
    heads = [HeadInfo(f"char_{i}", "classification", len(alphabet), tuple(alphabet))
             for i in range(length)]

    def split(name):
        images, labels = arrays[f"{name}_images"], arrays[f"{name}_labels"]
        labelled = {head.name: labels[:, i] for i, head in enumerate(heads)}
        return tf.data.Dataset.from_tensor_slices((images, labelled)).map(
            lambda image, label: (tf.cast(image, tf.float32) / 255.0, label))

    info = DatasetInfo.multi_head(f"captcha_{length}x{len(alphabet)}", (height, width, 1),
                                  heads, train_size=train_size, eval_size=eval_size)
    return Dataset(train=split("train"), eval=split("eval") if eval_size else None,
                   info=info, fingerprint=f"captcha-{key}",
                   decode=lambda image_bytes: decode(image_bytes, (height, width)))


def decode(image_bytes, image_size):
    """One encoded captcha image (PNG, JPEG, ... of any size) as training sees it: float
    [height, width, 1] in [0, 1].

    Follows _draw in TensorFlow ops: PIL's grey ('L', the ITU-R 601 luma) rounded to
    whole levels, then its bilinear shrink, which widens the filter with the scale as
    antialias=True does, rounded again. A canvas-size captcha then comes within one grey
    level of the drawn image (tests/test_export.py); a plain bilinear resize, which samples
    without averaging, does not.
    """
    rgb = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    grey = tf.round(tf.image.rgb_to_grayscale(tf.cast(rgb, tf.float32)))
    resized = tf.round(tf.image.resize(grey, image_size, antialias=True))
    return tf.ensure_shape(resized / 255.0, (*image_size, 1))


def _cached_or_drawn(path, alphabet, length, image_size, train_size, eval_size, seed,
                     workers) -> dict:
    if os.path.exists(path):
        try:
            with np.load(path) as stored:
                arrays = dict(stored)
            _check_arrays(arrays, len(alphabet), length, image_size, train_size, eval_size)
            return arrays
        except Exception as error:  # pylint: disable=broad-except  (any failure: damaged)
            # The cache is ours and derived: drawing it again is the whole repair.
            logging.warning("The captcha cache %s is damaged (%s); drawing it again.", path,
                            described(error))
    rng = random.Random(seed)
    texts = ["".join(rng.choice(alphabet) for _ in range(length))
             for _ in range(train_size + eval_size)]
    start = time.perf_counter()
    logging.info("Drawing %d captchas once into %s ...", len(texts), path)
    images = _draw_all(texts, image_size, workers)
    logging.info("Drew %d captchas in %.1f s.", len(texts), time.perf_counter() - start)
    labels = np.array([[alphabet.index(c) for c in text] for text in texts], np.int64)
    arrays = {"train_images": images[:train_size], "train_labels": labels[:train_size],
              "eval_images": images[train_size:], "eval_labels": labels[train_size:]}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}.partial.npz"
        np.savez(partial, **arrays)
        os.replace(partial, path)  # readers never see a half-written cache
    except OSError as error:
        raise UserError(f"Cannot write the captcha cache {path} ({error}). Set "
                        "captcha.cache_dir (or $CAPTCHA_CACHE_DIR) to a writable folder.") \
            from error
    return arrays


def _check_arrays(arrays, classes, length, image_size, train_size, eval_size) -> None:
    """Raises ValueError unless `arrays` are the images and labels of these settings (a
    damaged cache can still unzip: a zip's CRCs do not cover its headers)."""
    for split, size in (("train", train_size), ("eval", eval_size)):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape != (size, *image_size, 1) or images.dtype != np.uint8:
            raise ValueError(f"{split} images of shape {images.shape}, {images.dtype}")
        if labels.shape != (size, length) or labels.dtype != np.int64 or (
                labels.size and not 0 <= labels.min() <= labels.max() < classes):
            raise ValueError(f"{split} labels of shape {labels.shape} out of range")


def _draw_all(texts, image_size, workers) -> np.ndarray:
    """uint8 images [N, height, width, 1], drawn in parallel processes for large N."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(texts) < PARALLEL_FROM:
        return _draw(texts, image_size)
    chunks = [texts[i:i + 500] for i in range(0, len(texts), 500)]
    # 'spawn': a fresh interpreter, never a fork of this process's TensorFlow threads.
    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return np.concatenate(list(pool.map(_draw, chunks, [image_size] * len(chunks))))


def _draw(texts, image_size) -> np.ndarray:
    from captcha.image import ImageCaptcha  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    generator = ImageCaptcha(*CANVAS)
    height, width = image_size
    return np.stack([
        np.asarray(generator.generate_image(text).convert("L").resize(
            (width, height), Image.Resampling.BILINEAR))[..., np.newaxis]
        for text in texts])
