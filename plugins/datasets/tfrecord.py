"""A dataset converted to TFRecord files by `python -m framework.tfrecord`, read back."""

import hashlib
import json
import os

from absl import logging
import tensorflow as tf

from framework import records, verified_files
from framework.data import Dataset
from framework.errors import UserError, reading
from framework.registry import register


@register.dataset
def tfrecord(directory=None):
    """The examples and info of the dataset converted into `directory`, in their original
    order: the shards are read at once (parallel interleave and parsing, deterministic).

    Every shard is checked as it is opened: its size against the metadata, then each
    record's checksum (once per machine and version of the file), so a damaged shard is
    an error naming it at the start of a run.
    Image datasets decode image files (for --mode=predict and exports) with a generic
    decoder: grey or colour as the data, resized to its input shape, scaled to [0, 1].
    Runs over several replicas read the training shards in parts (`Dataset.train_part`):
    part p of P is shards p, p + P, p + 2P, ...
    """
    if not directory:
        raise UserError("datasets.tfrecord needs its folder: datasets.tfrecord.directory = "
                        "'DIR' (written by python -m framework.tfrecord --output=DIR).")
    metadata = records.read_metadata(directory)
    info = records.info_from_json(metadata["info"])
    compression = records.COMPRESSIONS[metadata["compression"]]
    parse = records.parser(metadata["spec"])
    shards = {}  # split -> [(path, examples)]
    for split, saved in metadata["splits"].items():
        paths = [os.path.join(directory, name) for name in saved["files"]]
        for path, size in zip(paths, saved["bytes"]):
            _check_shard(path, size, compression)
        shards[split] = list(zip(paths, records.shard_sizes(saved["examples"], len(paths))))

    def read(chosen):
        """The examples of `chosen` shards, in their original relative order."""
        paths = [path for path, _ in chosen]
        return (tf.data.Dataset.from_tensor_slices(paths).interleave(
            lambda path: tf.data.TFRecordDataset(path, compression),
            cycle_length=len(paths), block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .apply(tf.data.experimental.assert_cardinality(sum(n for _, n in chosen))))

    def train_part(part, parts):
        if len(shards["train"]) < parts:
            return None
        chosen = shards["train"][part::parts]
        logging.info("datasets.tfrecord: part %d of %d is %s.", part, parts,
                     ", ".join(os.path.basename(path) for path, _ in chosen))
        return read(chosen)

    image = len(info.input_shape) == 3 and info.input_shape[-1] in (1, 3, 4)
    return Dataset(train=read(shards["train"]),
                   eval=read(shards["eval"]) if "eval" in shards else None, info=info,
                   decode=_image_decoder(info.input_shape) if image else None,
                   fingerprint=hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()
                                              ).hexdigest(),
                   train_part=train_part)


def _check_shard(path: str, size: int, compression: str) -> None:
    """Its size against the metadata's, then every record's checksum: once per machine
    and version of the file (verified_files)."""
    fix = ("Convert the dataset again (python -m framework.tfrecord ... --overwrite), or "
           "restore the file from a copy.")
    with reading(path, fix):
        actual = os.path.getsize(path)
        if actual != size:
            raise UserError(f"{path} has {actual} bytes, and the conversion wrote {size}: "
                            f"it is truncated or was replaced. {fix}")
        mark = verified_files.fingerprint([path], "tfrecord", compression)
        if not verified_files.is_verified(mark):
            tf.data.TFRecordDataset(path, compression).reduce(0, lambda n, _: n + 1)
            verified_files.mark_verified(mark)


def _image_decoder(shape):
    def decode(image_bytes):
        image = tf.io.decode_image(image_bytes, channels=shape[-1], expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, shape[:2], antialias=True)
        return tf.ensure_shape(image, shape)
    return decode
