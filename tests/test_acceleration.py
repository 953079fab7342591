"""Optional speed settings: XLA on the step function and a mixed-precision policy."""

import logging
import pathlib

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import events
from configs import TINY_CNN
from framework import assembly, auto_precision, hardware
from framework.errors import UserError
from framework.experiment import Experiment
from framework.precision import float32_outputs

def trained(tmp_path, name, extra=""):
    """(the run as its last checkpoint left it, the results of training it)."""
    gin.clear_config()
    gin.parse_config(TINY_CNN + extra)
    experiment = Experiment()
    results = experiment.run(str(tmp_path / name), "train_and_eval")
    return assembly.build(experiment, str(tmp_path / name)), results


def test_jit_compiled_steps_compute_what_the_plain_steps_do(tmp_path):
    plain, _ = trained(tmp_path, "plain")
    compiled, _ = trained(tmp_path, "xla", "Experiment.jit_compile = True")
    trainer = assembly.build_trainer(compiled, Experiment())
    assert trainer._compute_gradients is not trainer._gradients  # pylint: disable=protected-access
    for a, b in zip(plain.model.weights, compiled.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
    gin.clear_config()
    gin.parse_config(TINY_CNN)  # same seed: the runs' initial weights
    untrained = assembly.build(Experiment(), str(tmp_path / "untrained"))
    assert not np.allclose(untrained.model.weights[0].numpy(), compiled.model.weights[0].numpy())


def test_mixed_bfloat16_computes_in_bfloat16_and_keeps_float32_weights(tmp_path):
    experiment, results = trained(tmp_path, "bf16", "Experiment.precision_policy = 'mixed_bfloat16'")
    conv = experiment.model.layers[0]
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert np.isfinite(results["eval"]["loss"]) and results["step"] == 6
    # Only the experiment's model: the process-wide policy is back to float32.
    assert keras.config.dtype_policy().name == "float32"
    assert keras.layers.Dense(2).compute_dtype == "float32"


def test_mixed_float16_is_refused_with_the_alternative(tmp_path):
    with pytest.raises(UserError, match="mixed_float16 needs loss scaling.*mixed_bfloat16"):
        trained(tmp_path, "fp16", "Experiment.precision_policy = 'mixed_float16'")


def fake_step_ms(bfloat16_ms: float, timed: list | None = None):
    """A stand-in for auto_precision.step_ms: float32 steps take 10 ms, bfloat16 ones
    `bfloat16_ms`; records the policy of each model timed in `timed`."""
    def step_ms(model, input_shape, batch_size):
        policy = model.dtype_policy.name
        if timed is not None:
            timed.append(policy)
        return 10.0 if policy == "float32" else bfloat16_ms
    return step_ms


@pytest.mark.parametrize("bfloat16_ms, chosen", [
    (5.0, "mixed_bfloat16"),   # 2x: a clear win
    (8.0, "mixed_bfloat16"),   # 1.25x
    (9.0, "float32"),          # 1.11x: not worth rounding the activations
    (80.0, "float32"),         # a CPU without bfloat16 units
])
def test_auto_takes_the_policy_the_measurement_favours(tmp_path, monkeypatch, bfloat16_ms,
                                                       chosen):
    timed = []
    monkeypatch.setattr(auto_precision, "step_ms", fake_step_ms(bfloat16_ms, timed))
    monkeypatch.setattr(auto_precision, "CACHE_DIR", str(tmp_path / "decisions"))
    experiment, _ = trained(tmp_path, "auto", "Experiment.precision_policy = 'auto'")
    assert timed == ["float32", "mixed_bfloat16"]  # the run's own model, in each policy
    computes_in = "bfloat16" if chosen == "mixed_bfloat16" else "float32"
    assert experiment.model.layers[0].compute_dtype == computes_in
    assert experiment.model.layers[0].kernel.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"
    assert (tmp_path / "auto" / "compute_policy.txt").read_text() == chosen
    # TensorBoard's hparams say what 'auto' was, so runs from different machines compare.
    assert events.hparams(tmp_path / "auto")["Precision"] == chosen


def test_the_decision_is_cached_per_machine_and_model(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    timed = []
    monkeypatch.setattr(auto_precision, "CACHE_DIR", str(tmp_path / "decisions"))
    monkeypatch.setattr(auto_precision, "step_ms", fake_step_ms(5.0, timed))
    first, _ = trained(tmp_path, "first", "Experiment.precision_policy = 'auto'")
    # Another run of the same model on this machine: no measurement, the same choice,
    # and the same layer names and trained weights as the run that measured.
    monkeypatch.setattr(auto_precision, "step_ms", fake_step_ms(50.0, timed))
    second, _ = trained(tmp_path, "second", "Experiment.precision_policy = 'auto'")
    assert timed == ["float32", "mixed_bfloat16"]
    assert second.compute_policy == "mixed_bfloat16"
    assert "'auto' is mixed_bfloat16 here (cached: measured float32 10.0 ms" in caplog.text
    assert [w.path for w in first.model.weights] == [w.path for w in second.model.weights]
    for a, b in zip(first.model.weights, second.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)  # same seeded start
    # A different model is measured afresh, and so is a different machine.
    third, _ = trained(tmp_path, "third", "Experiment.precision_policy = 'auto'\n"
                                          "models.cnn.filters = 6")
    assert timed[2:] == ["float32", "mixed_bfloat16"] and third.compute_policy == "float32"
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    trained(tmp_path, "fourth", "Experiment.precision_policy = 'auto'")
    assert len(timed) == 6
    # A damaged cache entry is measured again, not trusted.
    for entry in pathlib.Path(auto_precision.CACHE_DIR).glob("*.json"):
        entry.write_text("{not json")
    trained(tmp_path, "fifth", "Experiment.precision_policy = 'auto'")
    assert len(timed) == 8


def test_a_named_policy_is_not_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(auto_precision, "step_ms", lambda *args: pytest.fail("measured"))
    run, _ = trained(tmp_path, "named", "Experiment.precision_policy = 'mixed_bfloat16'")
    assert run.compute_policy == "mixed_bfloat16"
    assert run.precision_reason == "set in the config"


def test_the_real_measurement_times_each_policy():
    # The real timer on a tiny model: a positive time for each policy, and a decision
    # that names them.
    def build():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
                                 keras.layers.Flatten(), keras.layers.Dense(3)])
    timings = auto_precision.measure(build, (8, 8, 1), 16)
    assert set(timings) == {"float32", "mixed_bfloat16"}
    assert all(0 < ms < 10_000 for ms in timings.values())
    choice = auto_precision.decide(timings)
    assert choice.policy in timings and "float32" in choice.reason


def test_a_resumed_run_keeps_what_auto_chose_when_it_started(tmp_path, monkeypatch):
    monkeypatch.setattr(auto_precision, "step_ms", fake_step_ms(80.0))
    monkeypatch.setattr(auto_precision, "CACHE_DIR", str(tmp_path / "this_machine"))
    started, _ = trained(tmp_path, "run", "Experiment.precision_policy = 'auto'")
    assert started.model.layers[0].compute_dtype == "float32"
    assert (tmp_path / "run" / "compute_policy.txt").read_text() == "float32"
    # Resumed where bfloat16 would win: still float32, the run's arithmetic does not change.
    monkeypatch.setattr(auto_precision, "step_ms", fake_step_ms(1.0))
    monkeypatch.setattr(auto_precision, "CACHE_DIR", str(tmp_path / "another_machine"))
    resumed, results = trained(tmp_path, "run", "Experiment.precision_policy = 'auto'\n"
                                                "Experiment.train_steps = 9")
    assert resumed.model.layers[0].compute_dtype == "float32" and results["step"] == 9
    assert resumed.precision_reason == "as when this run started"


def test_outputs_are_shown_in_float32_so_probabilities_below_one_stay_below_one():
    logits = tf.constant([[8.0, 0.0, 0.0]])  # softmax: 0.99933 for the first class
    in_bfloat16 = {"char_0": tf.cast(logits, tf.bfloat16), "char_1": logits}
    assert float(tf.nn.softmax(in_bfloat16["char_0"])[0, 0]) == 1.0  # what bf16 would show
    shown = float32_outputs(in_bfloat16)
    assert shown["char_0"].dtype == tf.float32 and shown["char_1"] is logits
    assert float(tf.nn.softmax(shown["char_0"])[0, 0]) == pytest.approx(0.99933, abs=1e-5)


def test_a_damaged_compute_policy_file_is_refused_with_the_fix(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "compute_policy.txt").write_text("bfloat17")
    with pytest.raises(UserError, match="holds 'bfloat17'.*set Experiment.precision_policy"):
        trained(tmp_path, "run", "Experiment.precision_policy = 'auto'")
