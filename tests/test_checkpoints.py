"""Checkpoints: damaged ones are skipped, the best one is kept, config changes are shown."""

import json
import logging

import gin
import pytest

import events
from framework.errors import UserError
from framework.run_dir import config_changes
from framework.experiment import Experiment
from configs import SYNTHETIC_MLP


def run(model_dir, extra="", mode="train_and_eval", checkpoint="latest"):
    gin.clear_config()
    gin.parse_config(SYNTHETIC_MLP + extra)
    return Experiment().run(str(model_dir), mode, checkpoint)


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    run(tmp_path, "Experiment.checkpoint_every = 20")
    newest = next((tmp_path / "checkpoints").glob("ckpt-60.data-*"))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with caplog.at_level(logging.INFO):
        results = run(tmp_path, "Experiment.checkpoint_every = 20\nExperiment.train_steps = 80")
    assert "ckpt-60 is damaged" in caplog.text
    assert "Training from step 40 to 80" in caplog.text
    assert results["step"] == 80


def test_all_checkpoints_damaged_is_a_clear_error(tmp_path):
    run(tmp_path, "Experiment.checkpoint_every = 30")
    for data in (tmp_path / "checkpoints").glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    with pytest.raises(UserError, match="Every checkpoint in .* is damaged"):
        run(tmp_path)


def test_best_checkpoint_is_kept_with_its_metric_and_can_be_evaluated(tmp_path):
    results = run(tmp_path, """
        Experiment.eval_every = 10
        Experiment.best_checkpoint_metric = 'loss'
        Experiment.best_checkpoint_mode = 'min'
    """)
    losses = [float(value) for _, value in events.read(tmp_path / "eval")["loss"]]
    record = json.loads((tmp_path / "checkpoints/best/best_metric.json").read_text())
    assert record["metric"] == "loss" and record["mode"] == "min"
    assert record["value"] == pytest.approx(min(losses))
    assert len(list((tmp_path / "checkpoints/best").glob("*.index"))) == 1
    best = run(tmp_path, mode="eval", checkpoint="best")
    assert best["step"] == record["step"]
    assert best["eval"]["loss"] == pytest.approx(record["value"], rel=1e-5)
    latest = run(tmp_path, mode="eval")
    assert latest["step"] == 60 and latest["eval"] == pytest.approx(results["eval"])


def test_unknown_best_metric_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="'precision' is not an eval metric; the eval "
                                        "metrics are loss, accuracy"):
        run(tmp_path, "Experiment.best_checkpoint_metric = 'precision'")


def test_config_changes_on_resume_are_shown(tmp_path, caplog):
    run(tmp_path, "Experiment.train_steps = 30")
    with caplog.at_level(logging.WARNING):
        run(tmp_path, "Experiment.train_steps = 60")
    assert "differs from the one saved" in caplog.text
    assert "-Experiment.train_steps = 30" in caplog.text
    assert "+Experiment.train_steps = 60" in caplog.text


def test_config_changes_lists_only_bindings():
    before = "# Parameters for x:\nx.a = 1\nx.b = 2\n"
    assert config_changes(before, before) == ""
    assert config_changes(before, before.replace("x.b = 2", "x.b = 3")).splitlines()[2:] == [
        "-x.b = 2", "+x.b = 3"]


def test_checkpoint_files_written_without_the_state_update_are_ignored(tmp_path, caplog):
    # A process killed while saving leaves data and index files that the manager's
    # `checkpoint` state file does not list yet: the run goes on from the listed one.
    run(tmp_path, "Experiment.train_steps = 30")
    checkpoints = tmp_path / "checkpoints"
    for part in checkpoints.glob("ckpt-30.*"):
        (checkpoints / part.name.replace("ckpt-30", "ckpt-45")).write_bytes(
            part.read_bytes()[:100])
    with caplog.at_level(logging.INFO):
        results = run(tmp_path, "Experiment.train_steps = 60")
    assert "Training from step 30 to 60" in caplog.text and results["step"] == 60
