"""Reliability: exact resume after SIGKILL, SIGTERM/Ctrl-C, damaged checkpoints, the lock."""

import pathlib
import signal

import numpy as np
import pytest
import tensorflow as tf

from helpers import run_cli, run_cli_process

DETERMINISTIC_RUN = [
    "--gin_bindings=Experiment.dataset = @datasets.synthetic",
    "--gin_bindings=Experiment.model = @models.cnn",
    "--gin_bindings=Experiment.loss = @losses.sparse_categorical_crossentropy",
    "--gin_bindings=Experiment.optimizer = @optimizers.adam",
    "--gin_bindings=Experiment.deterministic = True",
    "--gin_bindings=Experiment.batch_size = 32",
    "--gin_bindings=Experiment.train_steps = 150",
    "--gin_bindings=Experiment.steps_per_loop = 5",
    "--gin_bindings=Experiment.summary_every = 5",
    "--gin_bindings=Experiment.checkpoint_every = 15",
    "--gin_bindings=Experiment.eval_every = 50",
    "--gin_bindings=models.cnn.filters = 8",
    "--gin_bindings=models.cnn.dense_units = 32",
    "--gin_bindings=models.cnn.dropout = 0.3",  # its random masks must resume too
    "--gin_bindings=datasets.synthetic.train_size = 200",  # 6 batches an epoch: many epochs
    "--verbosity=0",  # absl's INFO lines on stderr ("step 20/150", "Saved checkpoint"): the
                      # tests wait for them
]
MIRRORED = ["--gin_bindings=Experiment.strategy = @strategies.mirrored",
            "--gin_bindings=strategies.mirrored.logical_cpus = 2"]


def final_weights(model_dir: pathlib.Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(model_dir / "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("_CHECKPOINTABLE", "save_counter"))}


def kill_when(model_dir, args, line_fragment, sig=signal.SIGKILL):
    """Starts a run and sends `sig` once its log shows `line_fragment`; returns the process."""
    process = run_cli_process(*args, f"--model_dir={model_dir}")
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line_fragment in line:
            process.send_signal(sig)
            break
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, "".join(seen) + stderr


@pytest.mark.parametrize("strategy", [[], MIRRORED], ids=["one_device", "mirrored"])
def test_killed_and_resumed_run_ends_bit_for_bit_like_an_uninterrupted_one(tmp_path, strategy):
    args = DETERMINISTIC_RUN + strategy
    whole = run_cli(*args, f"--model_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    interrupted = tmp_path / "interrupted"
    # Killed in the middle of host loops, and right after a save; the mirrored run (slower
    # to start) at two of those points.
    fragments = ("step 20/150", "Saved checkpoint", "step 125/150")
    for fragment in fragments if not strategy else fragments[1:]:
        status, log = kill_when(interrupted, args, fragment)
        assert status == -signal.SIGKILL, log
    resumed = run_cli(*args, f"--model_dir={interrupted}")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    expected, actual = final_weights(tmp_path / "whole"), final_weights(interrupted)
    assert expected.keys() == actual.keys() and any("rng" in name for name in actual)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_leave_a_resumable_checkpoint(tmp_path, sig, status):
    returncode, log = kill_when(tmp_path, DETERMINISTIC_RUN, "step 30/150", sig)
    assert returncode == status, log
    stopped_at = int(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).split("-")[-1])
    assert 30 <= stopped_at < 150 and stopped_at % 5 == 0  # at the end of a host loop
    assert f"received {signal.Signals(sig).name}" in log
    assert "re-run the same command to go on" in log
    resumed = run_cli(*DETERMINISTIC_RUN, f"--model_dir={tmp_path}")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Training from step {stopped_at} to 150" in resumed.stderr


def test_second_run_on_a_live_model_dir_is_refused_and_a_dead_lock_is_not(tmp_path):
    slow = DETERMINISTIC_RUN + ["--gin_bindings=Experiment.train_steps = 100000"]
    first = run_cli_process(*slow, f"--model_dir={tmp_path}")
    try:
        for line in first.stderr:
            if "step 5/" in line:
                break
        second = run_cli(*DETERMINISTIC_RUN, f"--model_dir={tmp_path}")
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"is in use by a live run (PID {first.pid})" in second.stderr
    finally:
        first.kill()
        first.communicate(timeout=60)
    assert (tmp_path / ".lock").exists()  # left behind by the killed run...
    third = run_cli(*DETERMINISTIC_RUN, f"--model_dir={tmp_path}")
    assert third.returncode == 0, third.stderr  # ...and not in the way


def test_unwritable_model_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_cli(*DETERMINISTIC_RUN, f"--model_dir={blocker / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Cannot write to model_dir" in result.stderr
