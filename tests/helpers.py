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


def build_run(config: str, model_dir, checkpoint: str = "latest"):
    """(experiment, run): a gin config string's settings and the run's parts built in
    model_dir (framework.assembly), without training."""
    import gin  # pylint: disable=import-outside-toplevel
    from framework import assembly  # pylint: disable=import-outside-toplevel
    from framework.experiment import Experiment  # pylint: disable=import-outside-toplevel
    gin.parse_config(config)
    experiment = Experiment()
    return experiment, assembly.build(experiment, str(model_dir), checkpoint)


def training_iterator(experiment, run, start_step: int = 0):
    """A distributed iterator over the run's training stream from `start_step`."""
    from framework.data import training_batches  # pylint: disable=import-outside-toplevel
    batches = training_batches(run.data.examples("train"), experiment.batch_size, experiment.seed,
                               start_step)
    return iter(run.strategy.experimental_distribute_dataset(batches))


def evaluate(experiment, run) -> dict:
    """One evaluation pass of the run's model as it is now: its scalar metrics."""
    from framework import pipeline  # pylint: disable=import-outside-toplevel
    from framework.evaluator import Evaluator  # pylint: disable=import-outside-toplevel
    return Evaluator(run.strategy, run.trained_model, run.objective,
                     lambda: pipeline.evaluation_datasets(run.strategy, run.data,
                                                          experiment.batch_size)
                     ).evaluate().scalars
