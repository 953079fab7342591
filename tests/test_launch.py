"""`python -m framework.launch`: a local cluster of framework.main workers in one command."""

import subprocess
import sys

import events
from helpers import REPO, cli_environment
from test_multi_worker import CONFIG


def launch(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framework.launch", *args], cwd=REPO,
                          env=cli_environment(env), capture_output=True, text=True,
                          timeout=timeout)


def test_two_workers_launched_train_together_and_leave_only_the_chiefs_files(tmp_path):
    scratch = tmp_path / "tmp"  # where the non-chief worker's scratch checkpoints go
    scratch.mkdir()
    model_dir = tmp_path / "run"
    config = [arg for arg in CONFIG if "strategies" not in arg]  # the launcher binds it
    result = launch("--workers=2", "--", *config, f"--model_dir={model_dir}",
                    env={"TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert all(line.startswith(("[worker 0] ", "[worker 1] ")) for line in lines), lines
    assert "[worker 0] final eval accuracy" in result.stdout
    assert "train_and_eval: 6 steps at batch 32 · CPU × 2 replicas" in result.stdout
    train = events.read(model_dir / "train")
    assert [step for step, _ in train["loss"]] == [3, 6]  # one writer: the chief
    assert not list(scratch.glob("worker-checkpoints-*"))  # the other worker's scratch


def test_a_failing_worker_stops_the_launch_with_its_status(tmp_path):
    result = launch("--workers=2", "--", *CONFIG, "--gin_bindings=Experiment.batch_size = -1",
                    f"--model_dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: Experiment.batch_size must be a positive integer, got -1." in result.stdout
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "run").exists()
