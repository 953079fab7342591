"""Where gin files are found (includes relative to the including file, built-in configs from
any directory and from an installed wheel) and schedules that span the run's own steps."""

import os
import subprocess
import sys
import zipfile

import gin
import pytest

from framework import config, experiment, registry, run_length  # noqa: F401  (registers Experiment)
from framework.errors import UserError
from configs import SYNTHETIC_MLP
from helpers import REPO, run_cli

registry.discover()


def test_include_is_relative_to_the_including_file(tmp_path, monkeypatch):
    (tmp_path / "configs" / "shared").mkdir(parents=True)
    (tmp_path / "configs" / "shared" / "common.gin").write_text("Experiment.seed = 7\n")
    (tmp_path / "configs" / "exp.gin").write_text(
        "include 'shared/common.gin'\nExperiment.batch_size = 16\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config.parse([str(tmp_path / "configs" / "exp.gin")], [])
    assert gin.query_parameter("Experiment.seed") == 7
    assert gin.query_parameter("Experiment.batch_size") == 16


def test_a_users_config_outside_the_repo_includes_gin_base(tmp_path, monkeypatch):
    (tmp_path / "mine.gin").write_text("include 'gin/mlp.gin'\nExperiment.batch_size = 8\n")
    monkeypatch.chdir(tmp_path)
    config.parse(["mine.gin"], [])
    assert gin.query_parameter("Experiment.batch_size") == 8
    assert gin.query_parameter("Experiment.seed") == 42  # from the built-in base.gin


def test_a_bare_name_finds_the_built_in_config_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config.parse(["cnn.gin"], [])
    assert gin.query_parameter("Experiment.batch_size") == 32
    assert config.find_gin_file("cnn.gin") == str(REPO / "gin" / "cnn.gin")


def test_a_file_in_the_current_directory_wins_over_the_built_in_one(tmp_path, monkeypatch):
    (tmp_path / "cnn.gin").write_text("Experiment.batch_size = 3\n")
    monkeypatch.chdir(tmp_path)
    config.parse(["cnn.gin"], [])
    assert gin.query_parameter("Experiment.batch_size") == 3


def test_a_missing_include_names_the_including_file_line_and_places_searched(tmp_path):
    (tmp_path / "exp.gin").write_text("# mine\ninclude 'nothere.gin'\n")
    with pytest.raises(UserError) as error:
        config.parse([str(tmp_path / "exp.gin")], [])
    message = str(error.value)
    assert f"{tmp_path / 'exp.gin'}, line 2: include 'nothere.gin' names no file" in message
    assert "built-in configs (base.gin" in message


def test_a_syntax_error_in_an_included_file_names_that_file_and_line(tmp_path):
    (tmp_path / "broken.gin").write_text("Experiment.seed = 1\nExperiment.batch_size = 3a\n")
    (tmp_path / "exp.gin").write_text("include 'broken.gin'\n")
    with pytest.raises(UserError) as error:
        config.parse([str(tmp_path / "exp.gin")], [])
    message = str(error.value)
    assert f"{tmp_path / 'broken.gin'}, line 2" in message
    assert "Experiment.batch_size = 3a" in message
    assert "resolved-gin-file" not in message


def test_the_main_command_runs_a_config_outside_the_repo_from_another_directory(tmp_path):
    (tmp_path / "mine.gin").write_text(
        "include 'gin/mlp.gin'\n" + SYNTHETIC_MLP + "Monitoring.histogram_every = None\n")
    result = run_cli("--gin_file=mine.gin", "--model_dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_an_installed_wheel_ships_the_built_in_configs(tmp_path):
    """The wheel pip would install, unpacked as site-packages would hold it, and used from
    another directory with the checkout out of reach."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "wheel"), str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "wheel").glob("*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "framework" / "configs" / "cnn.gin").is_file()
    check = subprocess.run(
        [sys.executable, "-c",
         "import gin\n"
         "from framework import config, registry, experiment\n"
         "registry.discover()\n"
         "config.parse(['cnn.gin'], [])\n"
         "print(config.BUILTIN_CONFIGS, gin.query_parameter('Experiment.batch_size'))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(site)})
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.split() == [str(site / "framework" / "configs"), "32"]


def test_a_schedule_left_unset_spans_the_runs_train_steps():
    config.parse(["gin/mlp.gin"], ["Experiment.train_steps = 300"])
    with run_length.training_for(300):
        schedule = registry.build(registry.find("schedules.cosine_decay").configurable)
    assert schedule.decay_steps == 300
    assert float(schedule(300)) == pytest.approx(0.05 * 1e-3)


def test_an_explicit_schedule_length_still_wins():
    config.parse(["gin/mlp.gin"], ["schedules.cosine_decay.decay_steps = 50"])
    with run_length.training_for(300):
        schedule = registry.build(registry.find("schedules.cosine_decay").configurable)
    assert schedule.decay_steps == 50


def test_a_schedule_after_a_warm_up_spans_the_steps_that_remain():
    config.parse([], ["schedules.linear_warmup.after = @schedules.cosine_decay",
                      "schedules.linear_warmup.warmup_steps = 100"])
    with run_length.training_for(1000):
        schedule = registry.build(registry.find("schedules.linear_warmup").configurable)
    assert schedule.after.decay_steps == 900


def test_a_schedule_without_a_length_outside_a_run_says_what_to_set():
    with pytest.raises(UserError, match="schedules.cosine_decay.decay_steps is unset"):
        registry.build(registry.find("schedules.cosine_decay").configurable)
