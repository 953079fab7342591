"""The TFRecord form of a dataset: how its examples become `tf.train.Example` records and
back, and the metadata file beside the shards.

    DIR/
      metadata.json                     DatasetInfo, feature spec, shards, counts, encoding
      train-00000-of-00004.tfrecord     examples 0, 4, 8, ... of the training split
      ...
      eval-00000-of-00002.tfrecord

Example i of a split goes to shard i mod N, so reading the shards with a deterministic
interleave of cycle N and block 1 gives the examples in their original order, while N
files are read at once. Every component of an example is one bytes feature: the tensor
serialized exactly (`raw`), or for 8-bit images in [0, 1], a PNG (`png`, 3-6x smaller).
The metadata is written last: a folder without it is an unfinished conversion.
"""

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from framework.data import DatasetInfo, HeadInfo
from framework.errors import UserError

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
ENCODINGS = ("raw", "png")
COMPRESSIONS = {"none": "", "gzip": "GZIP", "zlib": "ZLIB"}


def shard_name(split: str, index: int, count: int, compression: str = "none") -> str:
    suffix = {"none": "", "gzip": ".gz", "zlib": ".zz"}[compression]
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord{suffix}"


def shard_sizes(examples: int, count: int) -> list[int]:
    """Examples in each of `count` shards of a split of `examples` (example i in shard i
    mod count)."""
    return [examples // count + (index < examples % count) for index in range(count)]


def components(element_spec) -> dict[str, tf.TensorSpec]:
    """An example's parts by name: 'features', and 'labels' or 'labels/<head>'."""
    features, labels = element_spec
    if isinstance(labels, dict):
        return {"features": features, **{f"labels/{head}": spec for head, spec in labels.items()}}
    return {"features": features, "labels": labels}


def spec_to_json(specs: dict[str, tf.TensorSpec], image_encoding: str) -> dict:
    return {name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list(),
                   "encoding": image_encoding if name == "features" else "raw"}
            for name, spec in specs.items()}


def is_image(spec: tf.TensorSpec) -> bool:
    return spec.shape.rank == 3 and spec.shape[-1] in (1, 3, 4) and spec.dtype.is_floating


def is_8_bit(images: tf.Tensor) -> bool:
    """Whether float images hold only values k/255 in [0, 1] (what PNG keeps exactly)."""
    pixels = tf.round(images * 255.0)
    return bool(tf.reduce_all((pixels >= 0) & (pixels <= 255) & (pixels / 255.0 == images)))


def serializer(specs: dict[str, tf.TensorSpec], image_encoding: str):
    """element -> a tuple of bytes tensors, one per component (TF ops: map it)."""
    def serialize(features, labels):
        parts = components((features, labels))
        out = []
        for name in specs:
            value = parts[name]
            if name == "features" and image_encoding == "png":
                pixels = tf.cast(tf.round(value * 255.0), tf.uint8)
                exact = tf.reduce_all(tf.cast(pixels, value.dtype) / 255.0 == value)
                with tf.control_dependencies([tf.debugging.Assert(exact, [
                        "not 8-bit values in [0, 1]"])]):
                    out.append(tf.io.encode_png(pixels))
            else:
                out.append(tf.io.serialize_tensor(value))
        return tuple(out)
    return serialize


def example_bytes(names: list[str], values) -> bytes:
    """One serialized tf.train.Example holding `values` (bytes) under `names`."""
    feature = {name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
               for name, value in zip(names, values)}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parser(spec: dict):
    """serialized Example -> (features, labels), as the converted dataset gave them."""
    description = {name: tf.io.FixedLenFeature([], tf.string) for name in spec}

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, description)
        values = {}
        for name, part in spec.items():
            dtype = tf.dtypes.as_dtype(part["dtype"])
            if part["encoding"] == "png":
                pixels = tf.io.decode_png(parsed[name], channels=part["shape"][-1])
                value = tf.cast(pixels, dtype) / 255.0
            else:
                value = tf.io.parse_tensor(parsed[name], dtype)
            values[name] = tf.ensure_shape(value, part["shape"])
        heads = {name.split("/", 1)[1]: value for name, value in values.items()
                 if name.startswith("labels/")}
        return values["features"], heads or values["labels"]
    return parse


def info_to_json(info: DatasetInfo) -> dict:
    return dataclasses.asdict(info)


def info_from_json(saved: dict) -> DatasetInfo:
    heads = tuple(HeadInfo(**{**head, "class_names": _tuple(head.get("class_names"))})
                  for head in saved.get("heads", ()))
    return DatasetInfo(**{**saved, "input_shape": tuple(saved["input_shape"]),
                          "class_names": _tuple(saved.get("class_names")), "heads": heads})


def _tuple(values):
    return None if values is None else tuple(values)


def read_metadata(directory: str) -> dict:
    """The metadata of converted `directory`; UserError when it is missing or unreadable."""
    path = os.path.join(directory, METADATA_FILE)
    if not os.path.isdir(directory):
        raise UserError(f"datasets.tfrecord.directory = {directory!r} does not exist. Convert "
                        "a dataset there first: python -m framework.tfrecord "
                        "--gin_file=CONFIG --output=DIR")
    if not os.path.exists(path):
        raise UserError(f"{directory} has no {METADATA_FILE}: it is not a finished "
                        "conversion (an interrupted one leaves none). Run "
                        "`python -m framework.tfrecord` again.")
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is damaged or unreadable ({error}). Convert the dataset "
                        "again.") from error
    if metadata.get("format") != FORMAT_VERSION:
        raise UserError(f"{path} is of format {metadata.get('format')!r}, this framework "
                        f"reads {FORMAT_VERSION}. Convert the dataset again.")
    return metadata


def write_json_atomically(path: str, value: dict) -> None:
    with open(path + ".partial", "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, default=_json_default)
    os.replace(path + ".partial", path)


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
