"""Reading TensorBoard event files back, as TensorBoard does."""

import pathlib

import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def read(run_dir: pathlib.Path) -> dict[str, list[tuple[int, object]]]:
    """{tag: [(step, value), ...]} for every tf.summary in `run_dir` (v2 stores tensors)."""
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    values = {}
    for tag in accumulator.Tags()["tensors"]:
        values[tag] = [(event.step, tf.make_ndarray(event.tensor_proto))
                       for event in accumulator.Tensors(tag)]
    return values


def hparams(run_dir: pathlib.Path) -> dict[str, object]:
    """The hyperparameters of the hparams session summary at `run_dir`."""
    accumulator = event_accumulator.EventAccumulator(str(run_dir))
    accumulator.Reload()
    content = accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {name: getattr(value, value.WhichOneof("kind"))
            for name, value in session.hparams.items()}
