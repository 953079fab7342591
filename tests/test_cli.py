"""The command line in fresh processes: the main job's contract and every bad input."""

import re

import pytest
import tensorflow as tf

from helpers import FASHION_MNIST_DIR, REPO, run_cli, tree_snapshot

needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")

SYNTHETIC = [
    "--gin_file=gin/cnn.gin",
    "--gin_bindings=Experiment.dataset = @datasets.synthetic",
    "--gin_bindings=models.cnn.filters = 4",
    "--gin_bindings=Experiment.train_steps = 6",
    "--gin_bindings=Experiment.steps_per_loop = 3",
]


@needs_fashion_mnist
def test_main_job_contract(tmp_path):
    model_dir = tmp_path / "cnn"
    result = run_cli("--gin_file=gin/cnn.gin", "--gin_bindings=Experiment.train_steps=40",
                     f"--model_dir={model_dir}")
    assert result.returncode == 0, result.stderr
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-40")
    assert list((model_dir / "train").glob("events.out.tfevents.*"))
    assert list((model_dir / "eval").glob("events.out.tfevents.*"))
    assert "Experiment.model = @models.cnn" in (model_dir / "operative_config.gin").read_text()
    accuracy = float(re.search(r"final eval accuracy: ([0-9.]+)", result.stdout).group(1))
    assert 0.5 < accuracy <= 1.0  # 40 steps of the real CNN already beat chance by far
    assert f"tensorboard --logdir {model_dir}" in result.stdout
    # The quiet console: a header, progress, the evaluation, the results; nothing else.
    lines = result.stdout.splitlines()
    assert lines[0] == f"gin/cnn.gin -> {model_dir}"
    # cnn.gin asks for 'auto': the line says what it chose and why.
    assert re.fullmatch(r"train_and_eval: 40 steps at batch 32 · CPU × 1 replica · "
                        r"precision \w+ \(auto: (cached: )?measured float32 [0-9.]+ ms, "
                        r"mixed_bfloat16 [0-9.]+ ms a step: .*\)", lines[1]), lines[1]
    assert lines[2].startswith("step 40/40 [")
    assert lines[3].startswith("eval at step 40: accuracy ")
    assert len(lines) == 7  # + final accuracy, final loss, how to watch the run
    assert result.stderr == ""


def test_without_model_dir_a_fresh_run_folder_is_chosen(tmp_path):
    (tmp_path / "gin").symlink_to(REPO / "gin")  # runs/ is made in the working directory
    result = run_cli(*SYNTHETIC, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = re.search(r"tensorboard --logdir (runs/cnn-\S+)", result.stdout).group(1)
    assert f"-> {folder} (a fresh folder; pass --model_dir to choose)" in result.stdout
    assert (tmp_path / folder / "checkpoints").is_dir()


def test_list_plugins():
    result = run_cli("--list_plugins")
    assert result.returncode == 0, result.stderr
    for expected in ("dataset plugins (gin module 'datasets'):", "datasets.fashion_mnist:",
                     "      data_dir = None", "optimizers.nadam:", "strategies.mirrored:",
                     "      logical_cpus = None", "      trunk = required"):
        assert expected in result.stdout
    assert "object at 0x" not in result.stdout
    # each description is a whole first paragraph of the plugin's docstring
    assert "Half a cosine from the initial rate down to alpha * initial over decay_steps " \
           "(default: the run's train_steps)." in result.stdout


def bad_start(model_dir, *args):
    """Runs a start that must fail, on a model_dir that already holds a run."""
    before = tree_snapshot(model_dir)
    result = run_cli(*args, f"--model_dir={model_dir}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert tree_snapshot(model_dir) == before, "a failed start changed model_dir"
    return result.stderr


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("existing")
    result = run_cli(*SYNTHETIC, f"--model_dir={model_dir}")
    assert result.returncode == 0, result.stderr
    return model_dir


@pytest.mark.parametrize("args, expected", [
    (["--gin_file=gin/cnnn.gin"],
     r"Gin file 'gin/cnnn.gin' does not exist here or among the built-in configs\. "
     r"Did you mean gin/cnn\.gin"),
    (SYNTHETIC + ["--gin_bindings=Experiment.model = @models.cnnn"],
     r"No configurable matching reference '@models\.cnnn'.*\n.*Did you mean 'models\.cnn'\?.*"
     r"Known model plugins: models\.cnn, models\.inception_v3, models\.linear, models\.mlp"),
    (SYNTHETIC + ["--gin_bindings=my_modle.x = 1"], r"No configurable matching 'my_modle'"),
    (SYNTHETIC + ["--gin_bindings=models.cnn.filtrs = 3"],
     r"doesn't have a parameter named 'filtrs'.*\n.*Did you mean 'filters'\?"),
    (SYNTHETIC + ["--gin_bindings=Experiment.train_step = 3"],
     r"Did you mean 'train_steps'\?"),
    (SYNTHETIC + ["--gin_bindings=Experiment.dataset = @datasets.fashion_mnist",
                  "--gin_bindings=datasets.fashion_mnist.data_dir = '/nonexistent'"],
     r"data_dir '/nonexistent' does not hold the fashion_mnist IDX files"),
    (SYNTHETIC + ["--gin_bindings=datasets.synthetic.input_shape = (5,)"],
     r"Model 'cnn' cannot be built for dataset 'synthetic' \(features \(5,\), 10 outputs\)"
     r"\. Keras said: .*layer 'conv2d' is incompatible"),
    (SYNTHETIC + ["--gin_bindings=Experiment.model = @models.linear",
                  "--gin_bindings=Experiment.loss = @losses.mean_squared_error"],
     r"The loss cannot compare model 'linear' outputs of shape \(28, 28, 10\)"),
    (SYNTHETIC + ["--mode=sideways"], r"mode"),
    (SYNTHETIC + ["--gin_bindings=optimizers.adam.learning_rate = 'fast'"],
     r"Building the optimizer 'adam' failed: .*Fix its gin parameters"),
    (SYNTHETIC + ["--gin_bindings=Experiment.batch_size = 'many'"],
     r"Experiment.batch_size must be a positive integer, got 'many'"),
])
def test_bad_input_is_one_clear_message(existing_run, args, expected):
    stderr = bad_start(existing_run, *args)
    assert re.search(expected, stderr, re.DOTALL), stderr


def test_checkpoint_of_another_model_is_refused(existing_run):
    stderr = bad_start(existing_run, *SYNTHETIC, "--gin_bindings=models.cnn.filters = 5")
    assert "does not fit this experiment's model" in stderr
    assert "The config changed since that run:" in stderr
    assert "-cnn.filters = 4" in stderr and "+cnn.filters = 5" in stderr


def test_verbose_shows_the_traceback(existing_run):
    result = run_cli("--gin_file=gin/cnnn.gin", "--verbose")
    assert result.returncode != 0 and "Traceback" in result.stderr
