"""Helpers shared by the tests: running the CLI, snapshotting a model_dir."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


def cli_environment(env=None) -> dict:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    # The repo first on the path, so the CLI runs this checkout from any working directory.
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), environment.get("PYTHONPATH")]))
    return environment


def run_cli(*args, env=None, cwd=REPO, timeout=300):
    """Runs `python -m framework.main ARGS` in a fresh process; returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "framework.main", *args],
        cwd=cwd, env=cli_environment(env), capture_output=True, text=True, timeout=timeout,
    )


def run_cli_process(*args, env=None, cwd=REPO) -> subprocess.Popen:
    """Starts `python -m framework.main ARGS` without waiting for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "framework.main", *args], cwd=cwd, env=cli_environment(env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def tree_snapshot(directory: pathlib.Path) -> dict:
    """{relative path: (size, mtime_ns)} of every file below `directory`."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*") if p.is_file()
    }
