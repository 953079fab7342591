"""Built-in hooks: early stopping, the NaN guard, the progress line."""

import logging
import re

import gin
import numpy as np
import pytest
import tensorflow as tf

from framework import assembly
from framework.data import Dataset, DatasetInfo
from framework.errors import UserError
from framework.experiment import Experiment
from framework.hooks import Hook
from framework.registry import register
from configs import SYNTHETIC_MLP


def run(model_dir, extra):
    gin.clear_config()
    gin.parse_config(SYNTHETIC_MLP + extra)
    experiment = Experiment()
    return experiment, experiment.run(str(model_dir))


def test_stop_when_training_loss_falls_below_a_threshold(tmp_path):
    _, results = run(tmp_path, """
        Experiment.train_steps = 1000
        Experiment.hooks = [@hooks.early_stopping()]
        hooks.early_stopping.source = 'train'
        hooks.early_stopping.metric = 'loss'
        hooks.early_stopping.threshold = 0.4
    """)
    assert "train loss" in results["stopped"] and "crossed the threshold 0.4" in results["stopped"]
    assert results["step"] < 1000
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith(
        f"ckpt-{results['step']}")


def test_stop_when_accuracy_rises_above_a_threshold(tmp_path):
    _, results = run(tmp_path, """
        Experiment.train_steps = 1000
        Experiment.hooks = [@hooks.early_stopping()]
        hooks.early_stopping.source = 'train'
        hooks.early_stopping.metric = 'accuracy'
        hooks.early_stopping.mode = 'max'
        hooks.early_stopping.threshold = 0.999
    """)
    assert "accuracy" in results["stopped"] and results["step"] < 1000
    assert results["eval"]["accuracy"] > 0.95


def test_stop_when_eval_loss_stops_improving(tmp_path):
    # A learning rate of 0 leaves the loss where it was: no evaluation improves on the first.
    _, results = run(tmp_path, """
        Experiment.train_steps = 1000
        Experiment.eval_every = 10
        optimizers.adam.learning_rate = 0.0
        Experiment.hooks = [@hooks.early_stopping()]
        hooks.early_stopping.patience = 3
    """)
    assert "has not improved" in results["stopped"]
    assert results["step"] == 40  # first eval at 10 sets the best; 20, 30, 40 do not beat it


@register.dataset
def poisoned_synthetic(poisoned_index=100):
    """Test data: the synthetic set with one example whose features are NaN."""
    clean = registry_build_synthetic()
    features, labels = next(iter(clean.train.batch(10_000)))
    features = features.numpy()
    features[poisoned_index] = np.nan
    return Dataset(tf.data.Dataset.from_tensor_slices((features, labels)), clean.eval,
                   DatasetInfo(**{**clean.info.__dict__, "name": "poisoned_synthetic"}))


def registry_build_synthetic():
    from framework import registry  # pylint: disable=import-outside-toplevel
    return registry.build(registry.find("datasets.synthetic").configurable)


def test_nan_guard_stops_naming_the_step_and_saves_nothing(tmp_path):
    experiment, results = run(tmp_path, """
        Experiment.dataset = @datasets.poisoned_synthetic
        Experiment.checkpoint_every = 5
        Experiment.hooks = [@hooks.nan_guard()]
    """)
    first = int(re.search(r"NaN or Inf at step (\d+)", results["stopped"])[1])
    assert 1 <= first <= 8  # the poisoned example is in one of the first epoch's 8 batches
    assert first <= results["step"] < first + 7  # stopped after that step's host loop
    assert results["exit_status"] == 3 and results["eval"] == {}
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    saved_step = int(latest.split("-")[-1]) if latest else 0
    assert saved_step < first  # nothing after the bad step was saved
    assert (latest or "None") in results["stopped"]


def test_nan_guard_skip_drops_bad_steps_and_counts_them(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        experiment, results = run(tmp_path, """
            Experiment.dataset = @datasets.poisoned_synthetic
            Experiment.hooks = [@hooks.nan_guard()]
            hooks.nan_guard.action = 'skip'
        """)
    # 60 steps of 8 batches an epoch: 7.5 epochs, so the poisoned batch came 7 or 8 times.
    counts = [int(m[1]) for r in caplog.records
              if (m := re.search(r"Skipped \d+ step\(s\) .* \((\d+) in all", r.getMessage()))]
    assert counts and counts[-1] in (7, 8)
    assert results["stopped"] is None and results["step"] == 60
    model = assembly.build(experiment, str(tmp_path)).model  # the saved, final weights
    assert all(np.isfinite(w.numpy()).all() for w in model.weights)
    assert results["eval"]["accuracy"] > 0.9


def test_progress_line(tmp_path, capsys):
    run(tmp_path, "Experiment.hooks = [@hooks.progress()]\n"
                  "hooks.progress.every_seconds = 0")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert re.fullmatch(r"step 60/60 \[#{24}\] 100% · loss [\d.e-]+ · [\d.]+ steps/s · "
                        r"ETA 0:00:00", lines[-1]), lines[-1]
    # not a terminal: a plain line every host loop (every_seconds = 0): 7 steps at most, cut
    # at the summaries (20, 40) and the eval (30)
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [
        7, 14, 20, 27, 30, 37, 40, 47, 54, 60]


class StopAtAccuracy(Hook):
    """The README's example hook."""

    def __init__(self, target):
        self.target, self.seen = target, []

    def after_eval(self, context, step, results):
        self.seen.append((context.step, step, context.train_steps, context.latest_checkpoint))
        if results.get("accuracy", 0) >= self.target:
            context.request_stop(f"accuracy {results['accuracy']:.3f} at step {step}")


@register.hook
def stop_at_accuracy(target=0.9):
    return StopAtAccuracy(target)


def test_a_users_hook_sees_the_run_context_and_stops_the_run(tmp_path):
    hook = StopAtAccuracy(0.5)
    gin.parse_config(SYNTHETIC_MLP + "Experiment.train_steps = 1000\n"
                                     "Experiment.eval_every = 30\n")
    results = Experiment(hooks=[hook]).run(str(tmp_path / "stopped"))
    assert results["stopped"].startswith("accuracy") and results["step"] == 30
    context_step, step, train_steps, latest = hook.seen[0]
    assert context_step == step == 30 and train_steps == 1000
    assert latest.endswith("ckpt-30")  # checkpoint_every = 30 saved before the evaluation


class OldStyleHook(Hook):
    def after_train_loop(self, experiment, step, loop):
        experiment.trainer.first_nonfinite_step.numpy()


@register.hook
def old_style():
    return OldStyleHook()


@register.hook
def not_a_hook():
    return "stop at 0.9"


def test_hooks_asking_for_the_experiments_parts_get_the_fix(tmp_path):
    with pytest.raises(UserError, match="asked its run for 'trainer'.*RunContext"):
        run(tmp_path, "Experiment.hooks = [@hooks.old_style()]")


def test_a_hook_plugin_that_returns_no_hook_is_refused_before_writing(tmp_path):
    with pytest.raises(UserError, match=r"Experiment.hooks = 'not_a_hook' gave a str, but a "
                                        r"hook plugin must return a Hook"):
        run(tmp_path / "run", "Experiment.hooks = [@hooks.not_a_hook]")
    assert not (tmp_path / "run").exists()
