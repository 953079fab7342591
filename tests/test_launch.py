"""`python -m framework.launch`: a local cluster of framework.main workers in one command,
and what a cluster does when a worker dies."""

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import configs
import events
from helpers import REPO, cli_environment, run_cli_process
from test_multi_worker import CONFIG, free_ports
from test_reliability import MIRRORED, final_weights


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


def test_a_killed_worker_makes_the_survivor_leave_with_one_clear_message(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    model_dir = tmp_path / "run"
    long_run = [arg for arg in CONFIG if "train_steps" not in arg] + [
        "--gin_bindings=Experiment.train_steps = 1000000",
        "--gin_bindings=strategies.multi_worker.timeout_seconds = 30.0"]
    processes = [run_cli_process(*long_run, f"--model_dir={model_dir}", env={
        "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                 "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    try:
        events.poll(lambda: (model_dir / "train").exists(), 120, "the cluster did not train",
                    None)
        processes[1].kill()
        killed_at = time.monotonic()
        _, stderr = processes[0].communicate(timeout=120)
        waited = time.monotonic() - killed_at
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
    assert processes[0].returncode == 1, stderr
    assert "error: The cluster lost a worker (" in stderr
    assert "launch every worker again to resume" in stderr
    assert "Traceback" not in stderr
    assert waited < 60, waited


def test_sigterm_stops_the_whole_cluster_at_one_step_and_a_relaunch_resumes_there(tmp_path):
    model_dir = tmp_path / "run"
    config = [arg for arg in CONFIG if "strategies" not in arg and "train_steps" not in arg]
    command = [sys.executable, "-m", "framework.launch", "--workers=2", "--", *config,
               f"--model_dir={model_dir}"]
    launcher = subprocess.Popen([*command, "--gin_bindings=Experiment.train_steps = 1000000",
                                 "--verbosity=0"],  # absl's INFO lines: "step 3/1000000"
                                cwd=REPO, env=cli_environment(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in launcher.stdout:  # until a step has trained: a checkpoint is then due
            seen.append(line)
            if "step 3/1000000" in line:
                break
        launcher.send_signal(signal.SIGTERM)
        stdout, stderr = launcher.communicate(timeout=90)
        stdout = "".join(seen) + stdout
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode == 128 + signal.SIGTERM, stdout + stderr
    steps = {int(step) for step in re.findall(r"Stopped at step (\d+)", stdout + stderr)}
    assert len(steps) == 1, stdout + stderr  # both workers, after the same step
    step = steps.pop()
    assert (model_dir / "checkpoints" / f"ckpt-{step}.index").exists()

    again = subprocess.run([*command, f"--gin_bindings=Experiment.train_steps = {step + 6}"],
                           cwd=REPO, env=cli_environment(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"[worker 0] resumed from {model_dir / 'checkpoints' / f'ckpt-{step}'} (step {step})" \
        in again.stdout


# -- a cluster reading TFRecord shards ------------------------------------------------------

@pytest.fixture(scope="module")
def four_shards(tmp_path_factory):
    """configs.SYNTHETIC_MLP's data as TFRecords: 256 training examples in 4 shards."""
    folder = tmp_path_factory.mktemp("shards")
    (folder / "data.gin").write_text(configs.SYNTHETIC_MLP)
    result = subprocess.run([sys.executable, "-m", "framework.tfrecord",
                             f"--gin_file={folder / 'data.gin'}",
                             f"--output={folder / 'records'}", "--shards=4"],
                            cwd=REPO, env=cli_environment(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return folder


def files_run(four_shards, *more) -> list[str]:
    """A deterministic run on the shards: 120 steps, a checkpoint every 20."""
    return [f"--gin_file={four_shards / 'data.gin'}",
            "--gin_bindings=Experiment.dataset = @datasets.tfrecord",
            f"--gin_bindings=datasets.tfrecord.directory = '{four_shards / 'records'}'",
            "--gin_bindings=Experiment.deterministic = True",
            "--gin_bindings=Experiment.precision_policy = 'float32'",
            "--gin_bindings=Experiment.train_steps = 120",
            "--gin_bindings=Experiment.steps_per_loop = 5",
            "--gin_bindings=Experiment.checkpoint_every = 20",
            "--gin_bindings=Experiment.eval_every = 120",
            "--verbosity=0", *more]  # absl's INFO lines: which files each worker reads


def test_two_workers_on_their_own_shards_resume_bit_for_bit_and_agree_with_one_process(
        four_shards, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    whole = tmp_path / "whole"
    result = launch("--workers=2", "--", *files_run(four_shards), f"--model_dir={whole}",
                    env={"TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stdout
    for worker, shards in ((0, "00000-of-00004.tfrecord, train-00002"),
                           (1, "00001-of-00004.tfrecord, train-00003")):
        lines = [line for line in result.stdout.splitlines()
                 if line.startswith(f"[worker {worker}]")
                 and ("datasets.tfrecord: part" in line or "training files" in line)]
        assert len(lines) == 2, result.stdout  # its part only: two of the four files
        assert f"part {worker} of 2 is train-{shards}" in lines[0]
        assert f"Replica {worker} of 2 reads its own part of the training files: 128 " \
            "examples." in lines[1]
    assert "[worker 0] final eval accuracy" in result.stdout
    steps = [step for step, _ in events.read(whole / "train")["loss"]]
    assert steps == sorted(set(steps)) and steps[-1] == 120  # one writer: the chief
    assert not list(scratch.glob("worker-checkpoints-*"))  # only the chief's files remain

    # Every worker killed (SIGKILL) after the first checkpoint, then launched again.
    interrupted = tmp_path / "interrupted"
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    logs = [open(tmp_path / f"worker{index}.log", "w") for index in range(2)]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "framework.main", *files_run(four_shards),
         "--gin_bindings=Experiment.strategy = @strategies.multi_worker",
         f"--model_dir={interrupted}"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env=cli_environment({"TF_CONFIG": json.dumps({
            "cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}))
        for index, log in enumerate(logs)]
    try:
        events.poll(lambda: (interrupted / "checkpoints" / "ckpt-20.index").exists(), 180,
                    "the cluster wrote no checkpoint", None, interval=0.02)
        for process in processes:
            process.kill()
    finally:
        for process, log in zip(processes, logs):
            process.kill()
            process.wait()
            log.close()
    assert [process.returncode for process in processes] == [-signal.SIGKILL] * 2
    assert not (interrupted / "checkpoints" / "ckpt-120.index").exists()
    again = launch("--workers=2", "--", *files_run(four_shards), f"--model_dir={interrupted}")
    assert again.returncode == 0, again.stdout
    assert "[worker 0] resumed from" in again.stdout
    expected, actual = final_weights(whole), final_weights(interrupted)
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)

    # One process over two logical CPUs reads the same parts for its two replicas.
    mirrored = tmp_path / "mirrored"
    one = subprocess.run([sys.executable, "-m", "framework.main", *files_run(four_shards),
                          *MIRRORED, f"--model_dir={mirrored}"], cwd=REPO,
                         env=cli_environment(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    expected = final_weights(mirrored)
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-5,
                                   err_msg=name)


def test_two_workers_on_one_shard_share_its_batches_and_evaluate(four_shards, tmp_path):
    """Fewer files than workers, in training and in evaluation: every worker reads all of
    them and keeps its share of each batch, as with data in memory."""
    one_shard = tmp_path / "one"
    result = subprocess.run([sys.executable, "-m", "framework.tfrecord",
                             f"--gin_file={four_shards / 'data.gin'}", f"--output={one_shard}",
                             "--shards=1"], cwd=REPO, env=cli_environment(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    short = ["--gin_bindings=Experiment.train_steps = 30",
             "--gin_bindings=Experiment.eval_every = 15"]
    files = [arg if "datasets.tfrecord.directory" not in arg else
             f"--gin_bindings=datasets.tfrecord.directory = '{one_shard}'"
             for arg in files_run(four_shards, *short)]
    two = launch("--workers=2", "--", *files, f"--model_dir={tmp_path / 'two_workers'}")
    assert two.returncode == 0, two.stdout
    for worker in (0, 1):  # each warns, and says how many shards to write
        assert any(line.startswith(f"[worker {worker}]") and "--shards=2" in line
                   for line in two.stdout.splitlines()), two.stdout
    assert "[worker 0] eval at step 15" in two.stdout
    in_memory = [arg for arg in files_run(four_shards, *short) if "tfrecord" not in arg]
    one = subprocess.run([sys.executable, "-m", "framework.main", *in_memory, *MIRRORED,
                          f"--model_dir={tmp_path / 'one_process'}"], cwd=REPO,
                         env=cli_environment(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    expected = final_weights(tmp_path / "one_process")
    actual = final_weights(tmp_path / "two_workers")
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-5,
                                   err_msg=name)
