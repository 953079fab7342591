"""TensorBoard summaries: read back from the event files, and served by a real TensorBoard."""

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import re

import numpy as np
import pytest
import tensorflow as tf

import events
from configs import CLASSIFIER
from framework import figures
from framework.experiment import Experiment  # noqa: F401  (registers its configurables)
from framework.heads import Head  # noqa: F401  (registers the Head configurable)
from framework.monitoring import hyperparameters
from helpers import run_cli

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
Monitoring.histogram_every = 4
Monitoring.images_at_eval = True
Monitoring.activation_filters = 3
Monitoring.profile_steps = (4, 6)
"""
CONV_TAG = "conv2d/kernel"  # the first Conv2D layer's kernel, '<layer>/<variable>'


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One short monitored run in a fresh process (Keras names its first conv layer
    'conv2d' there), shared by the tests below: (logdir/run, its final eval accuracy)."""
    run = tmp_path_factory.mktemp("logdir") / "run"
    result = run_cli(*[f"--gin_bindings={line}" for line in MONITORED_CNN.strip().splitlines()],
                     f"--model_dir={run}")
    assert result.returncode == 0, result.stderr
    accuracy = re.search(r"final eval accuracy: ([\d.]+)", result.stdout).group(1)
    return run, float(accuracy)


def test_every_summary_kind_is_written_with_its_shape(run_dir):
    run, accuracy = run_dir
    train, evaluation = events.read(run / "train"), events.read(run / "eval")
    for tag in ("loss", "accuracy", "learning_rate", "gradient_norm", "steps_per_second",
                "examples_per_second"):
        assert [step for step, _ in train[tag]] == [4, 8], tag
    assert float(train["gradient_norm"][-1][1]) > 0
    # Per variable: a histogram ([buckets, 3]: left edge, right edge, count), its
    # statistics and its gradient's histogram, grouped under the layer's name.
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
    assert [step for step, _ in train[CONV_TAG]] == [4, 8]
    # Text: the model summary table and the operative config.
    summary = train["model_summary"][0][1].item().decode()
    assert "conv2d" in summary and "Trainable params" in summary
    assert "Experiment.train_steps = 8" in train["operative_config"][0][1].item().decode()
    # Images after each evaluation: [width, height, PNG bytes...] per image.
    for tag in ("predictions", "confusion_matrix", "activations/conv2d", "activations/conv2d_1"):
        assert [step for step, _ in evaluation[tag]] == [4, 8], tag
        assert evaluation[tag][-1][1][2].startswith(b"\x89PNG"), tag
    assert len(evaluation["activations/conv2d"][-1][1]) == 2 + 2  # two fixed examples
    # The graph of the train loop, once; the profile of steps 5-6; hparams at the root.
    assert len(train["train_loop"]) == 1
    assert list((run / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert "_hparams_/session_start_info" in events.read(run)
    assert accuracy == pytest.approx(float(evaluation["accuracy"][-1][1]), abs=1e-4)


def test_hyperparameters_are_the_bindings_that_differ_from_defaults():
    values = hyperparameters("Experiment.batch_size = 32\nExperiment.seed = 42\n"
                             "models.cnn.filters = (8, 16)\nExperiment.model = @models.cnn\n"
                             "scoped/Head.loss_weight = 0.5")
    assert values == {"Experiment.batch_size": 32, "models.cnn.filters": "(8, 16)",
                      "Experiment.model": "@models.cnn", "scoped/Head.loss_weight": 0.5}


def test_activation_grid_tiles_each_filter_scaled_on_its_own():
    maps = np.zeros((5, 6, 6), np.float32)
    maps[..., 1] = np.arange(30).reshape(5, 6)  # a ramp; the others are constant (black)
    grid = figures.activation_grid(maps, columns=4)
    assert grid.shape == (2 * 6 - 1, 4 * 7 - 1, 1) and grid.dtype == np.uint8
    ramp = grid[:5, 7:13, 0]
    assert ramp.min() == 0 and ramp.max() == 255
    assert grid[:5, :6].max() == 0 and grid[5, 0, 0] == 255  # a white gap between rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def tensorboard_server(logdir):
    """A real TensorBoard on 127.0.0.1; yields get(path, body=None) -> parsed JSON."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}", "--host=127.0.0.1",
         f"--port={port}", "--load_fast=false", "--reload_interval=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def get(path, body=None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"} if body is not None else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    try:
        deadline = time.monotonic() + 90
        while True:  # until it serves and has loaded the run's train, eval and root
            try:
                if {"run/train", "run/eval", "run"} <= set(get("/data/runs")):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "TensorBoard did not load the run in 90 s"
            time.sleep(0.5)
        yield get
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_real_tensorboard_serves_every_dashboard(run_dir):
    run, accuracy = run_dir
    query = lambda **kwargs: urllib.parse.urlencode(kwargs)  # noqa: E731
    with tensorboard_server(run.parent) as get:
        scalars = get("/data/plugin/scalars/tags")
        assert {"accuracy", "loss"} <= set(scalars["run/eval"])
        assert {"gradient_norm", "learning_rate", f"{CONV_TAG}/mean"} <= set(scalars["run/train"])
        values = get("/data/plugin/scalars/scalars?" + query(run="run/eval", tag="accuracy"))
        assert [step for _, step, _ in values] == [4, 8]
        assert values[-1][2] == pytest.approx(accuracy, abs=1e-4)

        histograms = get("/data/plugin/histograms/tags")["run/train"]
        assert {CONV_TAG, f"{CONV_TAG}/gradient"} <= set(histograms)
        kernel = get("/data/plugin/histograms/histograms?" + query(run="run/train", tag=CONV_TAG))
        assert [entry[1] for entry in kernel] == [4, 8]

        images = get("/data/plugin/images/tags")["run/eval"]
        assert {"predictions", "confusion_matrix", "activations/conv2d"} <= set(images)
        assert images["activations/conv2d"]["samples"] == 2
        grids = get("/data/plugin/images/images?" + query(run="run/eval", tag="predictions",
                                                         sample=0))
        assert [entry["step"] for entry in grids] == [4, 8]

        assert "model_summary" in get("/data/plugin/text/tags")["run/train"]
        text = get("/data/plugin/text/text?" + query(run="run/train", tag="model_summary"))
        assert "Trainable params" in text[0]["text"]

        graphs = get("/data/plugin/graphs/info")
        assert "train_loop" in graphs["run/train"]["tags"]

        experiment = get("/data/plugin/hparams/experiment", {"experimentName": ""})
        hparam_names = {info["name"] for info in experiment["hparamInfos"]}
        assert {"Experiment.train_steps", "Monitoring.histogram_every"} <= hparam_names
        metrics = {(m["name"].get("group"), m["name"]["tag"]) for m in experiment["metricInfos"]}
        assert ("eval", "accuracy") in metrics  # resolved from the run's eval/ directory
