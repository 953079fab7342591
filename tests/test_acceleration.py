"""Optional speed settings: XLA on the step function and a mixed-precision policy."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import events
from configs import TINY_CNN
from framework import assembly, hardware
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


@pytest.mark.parametrize("flags, onednn, computes_in", [
    ({"avx512f", "amx_tile", "amx_bf16"}, "1", "bfloat16"),  # AMX: bfloat16 wins
    ({"avx512f", "amx_tile", "amx_bf16"}, "0", "float32"),   # no oneDNN, no AMX kernels
    ({"avx2", "fma"}, "1", "float32"),                       # bfloat16 ~8x slower there
])
def test_auto_precision_picks_bfloat16_only_on_cpus_with_amx(tmp_path, monkeypatch, flags,
                                                               onednn, computes_in):
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])  # no GPU
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
    experiment, _ = trained(tmp_path, "auto", "Experiment.precision_policy = 'auto'")
    assert experiment.model.layers[0].compute_dtype == computes_in
    assert experiment.model.layers[0].kernel.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"
    # TensorBoard's hparams say what 'auto' was, so runs from different machines compare.
    policy = "mixed_bfloat16" if computes_in == "bfloat16" else "float32"
    assert events.hparams(tmp_path / "auto")["Precision"] == policy


def test_a_resumed_run_keeps_what_auto_chose_when_it_started(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    started, _ = trained(tmp_path, "run", "Experiment.precision_policy = 'auto'")
    assert started.model.layers[0].compute_dtype == "float32"
    assert (tmp_path / "run" / "compute_policy.txt").read_text() == "float32"
    # Resumed on a machine with AMX: still float32, the run's arithmetic does not change.
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"amx_tile", "amx_bf16"}))
    resumed, results = trained(tmp_path, "run", "Experiment.precision_policy = 'auto'\n"
                                                "Experiment.train_steps = 9")
    assert resumed.model.layers[0].compute_dtype == "float32" and results["step"] == 9


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
