"""TensorBoard summaries of two short runs side by side: read back from the event files,
and served by a real TensorBoard through its HTTP API."""

import re
import types
import urllib.parse

import gin
import pytest
import tensorflow as tf

import events
from configs import CLASSIFIER
from framework.experiment import Experiment
from framework.run_record import KEY_SETTINGS
from helpers import run_cli_process

MONITORED_CNN = CLASSIFIER + """
datasets.synthetic.train_size = 128
datasets.synthetic.eval_size = 32
Experiment.model = @models.cnn
models.cnn.filters = 4
models.cnn.dense_units = 8
Experiment.batch_size = 32
Experiment.train_steps = 8
Experiment.steps_per_loop = 4
Experiment.summary_every = 4
Experiment.eval_every = 4
Monitoring.histogram_every = 3
Monitoring.images_at_eval = True
Monitoring.activation_filters = 3
Monitoring.profile_steps = (4, 6)
"""
# The run beside it, with other settings: a learning-rate schedule whose length is left to
# the run, another seed and width; only what HParams compares is written.
OTHER_CNN = MONITORED_CNN + """
optimizers.adam.learning_rate = @schedules.cosine_decay()
schedules.cosine_decay.initial_learning_rate = 0.003
Experiment.seed = 7
models.cnn.filters = 6
Experiment.train_steps = 6
Experiment.steps_per_loop = 3
Experiment.eval_every = 3
Monitoring.histogram_every = None
Monitoring.images_at_eval = False
Monitoring.graph = False
Monitoring.profile_steps = None
"""
CONV_TAG = "weights/conv2d/kernel"  # the first Conv2D layer's kernel
RUNS = {"run", "run/train", "run/eval", "other", "other/train", "other/eval"}
# The hparams plugin's request for every session group (its http_api.md).
SESSION_GROUPS = {"experimentName": "", "startIndex": 0, "sliceSize": 10, "allowedStatuses": [
    "STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """logdir/run: MONITORED_CNN in a fresh process (Keras names its first conv layer
    'conv2d' there), and meanwhile logdir/other: OTHER_CNN in this one. Gives the logdir,
    and each run's final eval accuracy."""
    logdir = tmp_path_factory.mktemp("logdir")
    process = run_cli_process(
        *[f"--gin_bindings={line}" for line in MONITORED_CNN.strip().splitlines()],
        f"--model_dir={logdir / 'run'}")
    try:
        gin.clear_config()
        gin.parse_config(OTHER_CNN)
        other = Experiment().run(str(logdir / "other"))
        stdout, stderr = process.communicate(timeout=300)
    finally:
        gin.clear_config()
        if process.poll() is None:  # this run failed, or the other one hangs
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    accuracy = float(re.search(r"final eval accuracy: ([\d.]+)", stdout).group(1))
    return types.SimpleNamespace(logdir=logdir, accuracy=accuracy,
                                 other_accuracy=other["eval"]["accuracy"])


@pytest.fixture(scope="module")
def tensorboard(runs):
    """get(path, body=None) of a real TensorBoard serving both runs, once it has read
    every folder of both (each session has its metrics from train/ and eval/)."""
    with events.tensorboard_server(runs.logdir, RUNS) as get:
        def loaded():
            groups = get("/data/plugin/hparams/session_groups", SESSION_GROUPS)["sessionGroups"]
            return len(groups) == 2 and all(len(g["metricValues"]) == 3 for g in groups)
        events.poll(loaded, 60, "TensorBoard did not load both runs' metrics")
        yield get


def query(**kwargs) -> str:
    return urllib.parse.urlencode(kwargs)


def test_every_summary_kind_is_written_with_its_shape(runs):
    run = runs.logdir / "run"
    train, evaluation = events.read(run / "train"), events.read(run / "eval")
    for tag in ("loss", "accuracy", "learning_rate", "gradient_norm", "steps_per_second",
                "examples_per_second"):
        assert [step for step, _ in train[tag]] == [4, 8], tag
    assert float(train["gradient_norm"][-1][1]) > 0
    # Per variable: a histogram ([buckets, 3]: left edge, right edge, count), its
    # statistics and its gradient's histogram, under weights/<layer>/<variable>.
    checkpoint = tf.train.load_checkpoint(str(run / "checkpoints"))  # the weights at step 8
    # Keras 3 checkpoints each variable once, under the optimizer that tracks it first.
    kernel = checkpoint.get_tensor("optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE")
    histogram = train[CONV_TAG][-1][1]
    assert histogram.ndim == 2 and histogram.shape[1] == 3
    assert histogram[:, 2].sum() == pytest.approx(kernel.size)
    for statistic, expected in (("mean", kernel.mean()), ("stddev", kernel.std()),
                                ("min", kernel.min()), ("max", kernel.max())):
        assert float(train[f"{CONV_TAG}/{statistic}"][-1][1]) == pytest.approx(expected, abs=1e-5)
    assert train[f"{CONV_TAG}/gradient"][-1][1].shape[1] == 3
    # The initial weights, every 3 steps, and the final weights at step 8 (off the cadence).
    assert [step for step, _ in train[CONV_TAG]] == [0, 3, 6, 8]
    assert [step for step, _ in train[f"{CONV_TAG}/mean"]] == [0, 3, 6, 8]
    # Text: the model summary table and the operative config.
    summary = train["model_summary"][0][1].item().decode()
    assert "conv2d" in summary and "Trainable params" in summary
    assert "Experiment.train_steps = 8" in train["operative_config"][0][1].item().decode()
    # Images after each evaluation: [width, height, PNG bytes...] per image.
    for tag in ("predictions", "confusion_matrix", "activations/conv2d", "activations/conv2d_1"):
        assert [step for step, _ in evaluation[tag]] == [4, 8], tag
        assert evaluation[tag][-1][1][2].startswith(b"\x89PNG"), tag
    assert len(evaluation["activations/conv2d"][-1][1]) == 2 + 2  # two fixed examples
    # The graph of the train loop, once; the profile of steps 5-6; hparams at the root:
    # the session when training starts, the experiment with the first evaluation.
    assert len(train["train_loop"]) == 1
    assert list((run / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert {"_hparams_/session_start_info", "_hparams_/experiment"} <= set(events.read(run))
    assert runs.accuracy == pytest.approx(float(evaluation["accuracy"][-1][1]), abs=1e-4)


def test_hparams_compare_two_runs_by_their_resolved_settings(runs, tensorboard):
    experiment = tensorboard("/data/plugin/hparams/experiment", {"experimentName": ""})
    names = [info["name"] for info in experiment["hparamInfos"]]
    # TensorBoard lists hyperparameters by name and shows the first five: key settings.
    assert names[:5] == ["Batch size", "Dataset", "Learning rate", "Model", "Optimizer"]
    assert set(KEY_SETTINGS) | {"models.cnn.filters", "models.cnn.dense_units"} <= set(names)
    # The declared metrics, not every scalar: no learning rate, speed or weight statistic.
    metrics = [(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]]
    assert metrics == [("eval", "accuracy"), ("eval", "loss"), ("train", "loss")]

    groups = {group["name"]: group for group in tensorboard(
        "/data/plugin/hparams/session_groups", SESSION_GROUPS)["sessionGroups"]}
    assert set(groups) == {"run", "other"}
    run, other = groups["run"]["hparams"], groups["other"]["hparams"]
    assert (run["Learning rate"], other["Learning rate"]) == (0.001, "cosine_decay(0.003, 6, 0.0)")
    assert (run["Seed"], other["Seed"]) == (42, 7)
    assert (run["Train steps"], other["Train steps"]) == (8, 6)
    assert (run["models.cnn.filters"], other["models.cnn.filters"]) == (4, 6)
    assert run["models.cnn.kernel_size"] == other["models.cnn.kernel_size"] == 3  # a default
    for settings in (run, other):
        assert (settings["Model"], settings["Optimizer"], settings["Dataset"]) == \
            ("cnn", "adam", "synthetic")
        assert (settings["Batch size"], settings["Precision"]) == (32, "float32")
        for name, value in settings.items():
            assert "%" not in name and not name.endswith("."), name
            assert not re.search(r"[%@]", str(value)), (name, value)
    # Each session's metrics, read from its own eval/ and train/ folders.
    for name, accuracy in (("run", runs.accuracy), ("other", runs.other_accuracy)):
        values = {(m["name"]["group"], m["name"]["tag"]): m["value"]
                  for m in groups[name]["metricValues"]}
        assert set(values) == set(metrics)
        assert values["eval", "accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_learning_curves_come_before_weight_statistics(tensorboard):
    # Time Series and Scalars show tags in groups by their first part, in name order.
    tags = tensorboard("/data/plugin/timeseries/tags")
    train = tags["scalars"]["runTagInfo"]["run/train"] + \
        tags["histograms"]["runTagInfo"]["run/train"]
    groups = sorted({tag.split("/")[0] for tag in train})
    assert groups[-1] == "weights"
    assert {"accuracy", "loss", "learning_rate", "gradient_norm"} <= set(groups)
    assert all(tag.startswith("weights/") for tag in train
               if re.search(r"kernel|bias|/(mean|stddev|min|max)$", tag))
    scalars = tensorboard("/data/plugin/scalars/tags")["run/train"]
    assert {"loss", "accuracy", f"{CONV_TAG}/mean"} <= set(scalars)
    histograms = tensorboard("/data/plugin/histograms/histograms?" +
                             query(run="run/train", tag=CONV_TAG))
    assert [entry[1] for entry in histograms] == [0, 3, 6, 8]  # the last step included


def test_images_are_large_enough_to_read_at_card_size(tensorboard):
    def sizes(tag: str, sample: int = 0) -> list[tuple[int, int]]:
        entries = tensorboard("/data/plugin/images/images?" +
                              query(run="run/eval", tag=tag, sample=sample))
        assert [entry["step"] for entry in entries] == [4, 8], tag
        return [events.png_size(tensorboard("/data/plugin/images/individualImage?" +
                                            entry["query"])) for entry in entries]

    for width, height in sizes("confusion_matrix"):
        assert width >= 800 and height >= 800
    for width, _ in sizes("predictions"):
        assert width >= 800
    # Each example's maps: the input and 3 filters in tiles of at least 96 pixels.
    images = tensorboard("/data/plugin/images/tags")["run/eval"]
    assert images["activations/conv2d"]["samples"] == 2
    for sample in (0, 1):
        for width, height in sizes("activations/conv2d", sample):
            assert width >= 3 * 96 and height >= 2 * 96


def test_a_real_tensorboard_serves_every_other_dashboard(runs, tensorboard):
    values = tensorboard("/data/plugin/scalars/scalars?" + query(run="run/eval", tag="accuracy"))
    assert [step for _, step, _ in values] == [4, 8]
    assert values[-1][2] == pytest.approx(runs.accuracy, abs=1e-4)
    assert f"{CONV_TAG}/gradient" in tensorboard("/data/plugin/histograms/tags")["run/train"]
    assert "model_summary" in tensorboard("/data/plugin/text/tags")["run/train"]
    text = tensorboard("/data/plugin/text/text?" + query(run="run/train", tag="model_summary"))
    assert "Trainable params" in text[0]["text"]
    assert "train_loop" in tensorboard("/data/plugin/graphs/info")["run/train"]["tags"]
