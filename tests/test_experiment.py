"""The Experiment end to end, in process: summaries, checkpoints, resume, eval mode."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import events
from framework import assembly
from framework.errors import UserError
from framework.experiment import Experiment, from_config
from framework.registry import register
from configs import MIRRORED, SYNTHETIC_MLP

def run(model_dir, config=SYNTHETIC_MLP, mode="train_and_eval", extra=""):
    gin.clear_config()
    gin.parse_config(config + extra)
    return Experiment().run(str(model_dir), mode)


def test_train_and_eval_writes_summaries_checkpoints_and_config(tmp_path):
    results = run(tmp_path)
    assert results["step"] == 60 and results["eval"]["accuracy"] > 0.9
    train = events.read(tmp_path / "train")
    for tag in ("loss", "accuracy", "learning_rate", "steps_per_second",
                "examples_per_second"):
        assert [step for step, _ in train[tag]] == [20, 40, 60], tag
    assert train["examples_per_second"][0][1] == pytest.approx(
        32 * train["steps_per_second"][0][1])
    assert "Experiment.batch_size = 32" in train["operative_config"][0][1].item().decode()
    evaluation = events.read(tmp_path / "eval")
    assert [step for step, _ in evaluation["accuracy"]] == [30, 60]
    assert evaluation["accuracy"][-1][1] == pytest.approx(results["eval"]["accuracy"])
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-60")
    config = (tmp_path / "operative_config.gin").read_text()
    assert "mlp.hidden_units = (32,)" in config  # gin writes the shortest unique name
    assert "Experiment.train_steps = 60" in config


def test_rerun_resumes_from_the_latest_checkpoint(tmp_path):
    run(tmp_path, extra="Experiment.train_steps = 30")
    results = run(tmp_path, extra="Experiment.train_steps = 60")
    assert results["step"] == 60
    steps = [step for step, _ in events.read(tmp_path / "train")["loss"]]
    assert steps == [20, 30, 40, 60]  # the first run ended at 30; the second went on from there
    again = run(tmp_path, extra="Experiment.train_steps = 60")  # nothing left to do
    assert again["step"] == 60 and again["train"] == {}


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    deterministic = "Experiment.deterministic = True\n"
    whole = run(tmp_path / "whole", extra=deterministic)
    run(tmp_path / "split", extra=deterministic + "Experiment.train_steps = 30")
    resumed = run(tmp_path / "split", extra=deterministic)
    assert resumed["eval"]["loss"] == pytest.approx(whole["eval"]["loss"], rel=1e-6)


def test_eval_mode_evaluates_the_latest_checkpoint(tmp_path):
    trained = run(tmp_path)
    evaluated = run(tmp_path, mode="eval")
    assert evaluated["step"] == 60
    assert evaluated["eval"]["accuracy"] == pytest.approx(trained["eval"]["accuracy"])


def test_eval_mode_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(UserError, match="needs a checkpoint"):
        run(tmp_path, mode="eval")
    assert not any(tmp_path.iterdir())


def test_checkpoints_keep_the_last_n(tmp_path):
    run(tmp_path, extra="Experiment.checkpoint_every = 10\nExperiment.max_checkpoints_to_keep = 2")
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index"))
    assert kept == ["ckpt-50.index", "ckpt-60.index"]


def trained_model(experiment, model_dir):
    """The model of a finished run, restored from its latest checkpoint by the builder."""
    return assembly.build(experiment, str(model_dir)).model


def test_linear_regression_learns_weight_and_bias(tmp_path):
    experiment = from_config(["gin/linear_regression.gin"], [])
    experiment.run(str(tmp_path))
    kernel, bias = trained_model(experiment, tmp_path).get_layer("dense").get_weights()
    assert kernel.item() == pytest.approx(0.1, abs=0.01)
    assert bias.item() == pytest.approx(0.3, abs=0.01)


def test_nonlinear_regression_fits_the_parabola(tmp_path):
    experiment = from_config(["gin/nonlinear_regression.gin"], [])
    results = experiment.run(str(tmp_path))
    x = np.linspace(-0.5, 0.5, 11, dtype=np.float32).reshape(-1, 1)
    predicted = trained_model(experiment, tmp_path)(x).numpy()
    # noise is 0.02; a fit within 0.03 of x^2 everywhere has learned the curve
    np.testing.assert_allclose(predicted, x ** 2, atol=0.03)
    assert results["eval"]["loss"] < 1e-3  # the noise alone gives 4e-4


@pytest.mark.parametrize("binding, message", [
    ("Experiment.batch_size = 0", "batch_size must be a positive integer"),
    ("Experiment.train_steps = 'many'", "train_steps must be a positive integer"),
])
def test_bad_experiment_values(tmp_path, binding, message):
    with pytest.raises(UserError, match=message):
        run(tmp_path, extra=binding)


@register.model
def fixed_input_mlp(info):
    """A test model that ignores the data's shape and expects 10 numbers."""
    return keras.Sequential([keras.Input((10,)), keras.layers.Dense(info.num_outputs)])


def test_model_that_cannot_take_the_features_names_both_shapes(tmp_path):
    with pytest.raises(UserError, match=r"Model 'fixed_input_mlp' cannot take the inputs of "
                       r"dataset 'synthetic' \(features \(28, 28, 1\).*expects inputs of "
                       r"shape \(10,\)"):
        run(tmp_path, extra="Experiment.model = @models.fixed_input_mlp")
    assert not any(tmp_path.iterdir())


def test_custom_metrics_replace_the_defaults(tmp_path):
    gin.parse_config(SYNTHETIC_MLP)
    experiment = Experiment(metrics=lambda: [
        keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3_accuracy")])
    results = experiment.run(str(tmp_path))
    assert set(results["eval"]) == {"loss", "top3_accuracy"}
    assert results["eval"]["top3_accuracy"] > 0.9
    assert "top3_accuracy" in events.read(tmp_path / "eval")


def test_mirrored_run_end_to_end(tmp_path):
    results = run(tmp_path, extra=MIRRORED)
    assert results["step"] == 60 and results["eval"]["accuracy"] > 0.9
    learning_rates = events.read(tmp_path / "train")["learning_rate"]
    assert [float(value) for _, value in learning_rates] == pytest.approx([1e-3] * 3)
