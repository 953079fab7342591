"""What a new user got wrong, each one UserError that names the fix, raised before anything
is written: a plugin of one kind where another belongs, a dataset plugin returning the
wrong thing, a model as wide as the wrong number of classes, predicting without
load_file, --checkpoint=best without a best checkpoint, damaged data files.

Most run in-process (framework.assembly.build writes nothing; Experiment.run must not
either); a few go through the command line for exit status 2 and no traceback.
"""

import os
import pathlib

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from configs import SYNTHETIC_MLP
from framework.data import Dataset, DatasetInfo
from framework.errors import UserError
from framework.experiment import Experiment
from framework.predict import predict_files
from framework.registry import register
from helpers import build_run, run_cli
from plugins.datasets import idx

EXAMPLES = tf.data.Dataset.from_tensor_slices(
    (np.zeros((64, 8), np.float32), np.zeros(64, np.int64)))
INFO = DatasetInfo(name="ue", input_shape=(8,), task="classification", num_outputs=3)


@register.dataset
def ue_batched(drop_remainder=False):
    """Batched examples: the framework batches them itself."""
    return Dataset(EXAMPLES.batch(8, drop_remainder=drop_remainder), None, INFO)


@register.dataset
def ue_bare():
    """A bare tf.data.Dataset instead of a framework.data.Dataset."""
    return EXAMPLES


@register.dataset
def ue_pair():
    """(train, eval) instead of a framework.data.Dataset."""
    return EXAMPLES, EXAMPLES


@register.dataset
def ue_other_shape():
    """Features of another shape than the info says."""
    return Dataset(EXAMPLES, None, DatasetInfo("ue", (2, 4), "classification", 3))


@register.dataset
def ue_binary():
    """A binary task: 0/1 labels, one logit."""
    examples = tf.data.Dataset.from_tensor_slices(
        (np.zeros((64, 8), np.float32), np.zeros((64, 1), np.float32)))
    return Dataset(examples, examples, DatasetInfo("ue_binary", (8,), "binary", 1))


@register.model
def ue_fixed_width(info, width=10):
    """A model whose output width ignores the data's classes."""
    return keras.Sequential([keras.Input(info.input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(width)])


def failed_start(tmp_path, config: str, mode="train_and_eval", checkpoint="latest") -> str:
    """The UserError message of running `config` in a fresh model_dir, which must not have
    been created."""
    model_dir = tmp_path / "run"
    gin.parse_config(config)
    with pytest.raises(UserError) as raised:
        Experiment().run(str(model_dir), mode, checkpoint)
    assert not model_dir.exists(), "a failed start wrote to model_dir"
    return str(raised.value)


# -- a plugin of one kind where another belongs -----------------------------------------------

@pytest.mark.parametrize("binding, expected", [
    ("Experiment.loss = @models.cnn",
     "Experiment.loss got @models.cnn, which is a model plugin; Experiment.loss needs a loss "
     "plugin (known: @losses.binary_crossentropy"),
    ("Experiment.loss = @models.cnn()", "A model plugin belongs in Experiment.model."),
    ("Experiment.model = @datasets.fashion_mnist",
     "which is a dataset plugin; Experiment.model needs a model plugin (known: @models.cnn"),
    ("Experiment.dataset = @models.mlp", "which is a model plugin; Experiment.dataset needs a "
     "dataset plugin"),
    ("Experiment.strategy = @optimizers.adam", "which is an optimizer plugin; "
     "Experiment.strategy needs a strategy plugin"),
    ("Experiment.optimizer = @schedules.cosine_decay", "A schedule plugin belongs in an "
     "optimizer's learning_rate"),
    ("Experiment.hooks = [@hooks.nan_guard(), @models.mlp]", "Experiment.hooks got "
     "@models.mlp, which is a model plugin; Experiment.hooks needs a hook plugin"),
    ("Experiment.model = 'mlp'", "Experiment.model got the string 'mlp'; Experiment.model "
     "needs a model plugin (known: @models.cnn, "),
    ("Experiment.model = 'mlp'", "bound with @: e.g. @models.mlp."),
    ("Experiment.dataset = @datasets.fashion_mnist_heads\n"
     "Experiment.model = @models.multi_head\n"
     "models.multi_head.trunk = @losses.sparse_categorical_crossentropy",
     "models.multi_head.trunk got @losses.sparse_categorical_crossentropy, which is a loss "
     "plugin; models.multi_head.trunk needs a model plugin"),
])
def test_a_plugin_of_another_kind_is_named_with_both_kinds(tmp_path, binding, expected):
    assert expected in failed_start(tmp_path, SYNTHETIC_MLP + binding)


# -- what a dataset plugin returns ------------------------------------------------------------

@pytest.mark.parametrize("dataset, expected", [
    ("ue_bare", "Dataset plugin 'ue_bare' returned a bare tf.data.Dataset, not a "
     "framework.data.Dataset. A dataset plugin returns framework.data.Dataset(train=..., "
     "eval=..., info=DatasetInfo(...)), e.g.\n    examples = tf.data.Dataset.from_tensor_slices"),
    ("ue_pair", "Dataset plugin 'ue_pair' returned a tuple, not a framework.data.Dataset. "
     "A dataset plugin returns framework.data.Dataset(train=..., eval=..., info="),
    ("ue_batched", "Dataset plugin 'ue_batched' returns batched train examples: features of "
     "shape (None, 8) where its info says one example is (8,). Return unbatched examples"),
    ("ue_batched", "the framework shuffles and batches them itself"),
    ("ue_other_shape", "gives train features of shape (8,), but its info says "
     "input_shape=(2, 4). Make them agree"),
])
def test_a_dataset_plugin_returning_the_wrong_thing_is_told_what_to_return(
        tmp_path, dataset, expected):
    assert expected in failed_start(tmp_path, SYNTHETIC_MLP + f"Experiment.dataset = "
                                                              f"@datasets.{dataset}")


def test_examples_batched_with_drop_remainder_are_recognised_too(tmp_path):
    message = failed_start(tmp_path, SYNTHETIC_MLP + "Experiment.dataset = @datasets.ue_batched\n"
                           "datasets.ue_batched.drop_remainder = True")
    assert "returns batched train examples: features of shape (8, 8)" in message


# -- output width against the data's classes --------------------------------------------------

@pytest.mark.parametrize("bindings, expected", [
    # 10 outputs for 3 classes trained silently; 3 for 10 failed at step 1, after writes.
    ("Experiment.model = @models.ue_fixed_width\ndatasets.synthetic.num_classes = 3",
     "Model 'ue_fixed_width' outputs 10 values per example, but dataset 'synthetic' has 3 "
     "classes (one logit each). Fix: make its output layer 3 wide (a model plugin reads it "
     "as info.num_outputs)."),
    ("Experiment.model = @models.ue_fixed_width\nmodels.ue_fixed_width.width = 3",
     "outputs 3 values per example, but dataset 'synthetic' has 10 classes"),
    ("Experiment.model = @models.ue_fixed_width\nmodels.ue_fixed_width.width = 2\n"
     "Experiment.dataset = @datasets.ue_binary\n"
     "Experiment.loss = @losses.binary_crossentropy",
     "outputs 2 values per example, but dataset 'ue_binary' has a binary task (one logit). "
     "Fix: make its output layer 1 wide"),
    ("Experiment.model = @models.ue_fixed_width\nmodels.ue_fixed_width.width = 3\n"
     "Experiment.dataset = @datasets.linear_points\n"
     "Experiment.loss = @losses.mean_squared_error\nExperiment.metrics = None",
     "outputs 3 values per example, but dataset 'linear_points' has 1 target value."),
    ("Experiment.dataset = @datasets.synthetic_heads\nExperiment.model = @models.multi_head\n"
     "models.multi_head.trunk = @models.mlp\nmodels.multi_head.heads = [@a/Head()]\n"
     "a/Head.name = 'a'\na/Head.outputs = 10",
     "Head 'a' of model 'multi_head' outputs 10 values per example, but dataset "
     "'synthetic_heads' labels it with 3 classes (one logit each). Fix: make its output "
     "layer 3 wide (leave a/Head.outputs unset, and it is)."),
])
def test_outputs_as_wide_as_the_wrong_number_of_classes_are_refused_before_writing(
        tmp_path, bindings, expected):
    assert expected in failed_start(tmp_path, SYNTHETIC_MLP + bindings)


# -- modes that need something the run does not have ------------------------------------------

def test_predict_on_a_dataset_without_load_file_names_load_file(tmp_path):
    _, run = build_run(SYNTHETIC_MLP, tmp_path / "run")
    with pytest.raises(UserError, match=r"--mode=predict reads each file with the dataset's "
                       r"load_file, and dataset 'synthetic' has no load_file\. Fix: .*"
                       r"load_file\(path\) -> features"):
        predict_files(run, str(tmp_path))


def test_checkpoint_best_without_a_best_metric_says_to_set_it(tmp_path):
    message = failed_start(tmp_path, SYNTHETIC_MLP, mode="eval", checkpoint="best")
    assert ("has no best checkpoint, and a run keeps one only when "
            "Experiment.best_checkpoint_metric is set. Fix: set it (e.g. "
            "Experiment.best_checkpoint_metric = 'accuracy') and train") in message


def test_checkpoint_best_before_any_improving_evaluation_says_how_one_is_kept(tmp_path):
    message = failed_start(tmp_path, SYNTHETIC_MLP + "Experiment.best_checkpoint_metric = "
                           "'accuracy'", mode="eval", checkpoint="best")
    assert "has no best checkpoint yet; one is kept when an evaluation improves " \
           "Experiment.best_checkpoint_metric ('accuracy')" in message


# -- damaged data files -----------------------------------------------------------------------

def test_a_truncated_idx_archive_names_the_file_and_the_fix(tmp_path):
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        images = np.zeros((4, 28, 28), np.uint8)
        (tmp_path / stem).write_bytes(bytes([0, 0, 8, 3]) + b"".join(
            n.to_bytes(4, "big") for n in images.shape) + images.tobytes())
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(bytes([0, 0, 8, 1]) + (4).to_bytes(4, "big") + bytes(4))
    assert idx.idx_dataset("mnist", tmp_path, list("0123456789")).info.train_size == 4
    damaged = tmp_path / "t10k-labels-idx1-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-1])
    with pytest.raises(UserError, match=rf"^{damaged} is damaged or unreadable \(ValueError: "
                       r"cannot reshape .*\)\. Fix: replace it with an intact copy"):
        idx.idx_dataset("mnist", tmp_path, list("0123456789"))


def test_the_fix_for_a_damaged_idx_file_depends_on_where_it_came_from():
    system = pathlib.Path("/usr/share/datasets/fashion-mnist")
    assert idx.repair_hint("fashion_mnist", system, "dataset-fashion-mnist") == \
        "Fix: reinstall it (`apt-get install --reinstall dataset-fashion-mnist`)."
    downloaded = pathlib.Path("~/.keras/datasets/fashion-mnist")
    assert "the next run downloads it again" in idx.repair_hint("fashion_mnist", downloaded)


def write_folder(root: pathlib.Path) -> None:
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = np.full((12, 12, 3), 60 + 120 * label, np.uint8)
            (root / name / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())


@pytest.fixture(autouse=True)
def checked_folders(tmp_path, monkeypatch):
    """image_folder's record of folders already decoded, kept out of the home folder."""
    from framework import verified_files  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(verified_files, "MARKS_DIR", str(tmp_path / "checked"))
    return tmp_path / "checked"


FOLDER = SYNTHETIC_MLP + """
Experiment.dataset = @datasets.image_folder
image_folder.image_size = (12, 12)
image_folder.validation_fraction = 0.25
Experiment.loss = @losses.binary_crossentropy
Experiment.metrics = None
"""


def test_a_truncated_image_is_named_before_anything_is_written(tmp_path):
    write_folder(tmp_path / "images")
    damaged = tmp_path / "images" / "dog" / "2.png"
    damaged.write_bytes(damaged.read_bytes()[:40])
    message = failed_start(tmp_path, FOLDER + f"image_folder.directory = '{tmp_path / 'images'}'")
    assert message.startswith(f"1 image file(s) under {tmp_path / 'images'} are damaged and "
                              f"cannot be decoded: {damaged} (")
    assert "cannot be decoded: " in message and \
        "). Fix: delete them, or replace them with intact copies." in message


def test_a_folder_is_decoded_once_until_a_file_changes(tmp_path, checked_folders):
    write_folder(tmp_path / "images")
    config = FOLDER + f"image_folder.directory = '{tmp_path / 'images'}'"
    build_run(config, tmp_path / "run")
    assert len(list(checked_folders.iterdir())) == 1
    damaged = tmp_path / "images" / "cat" / "0.png"
    before = damaged.stat()
    data = damaged.read_bytes()
    damaged.write_bytes(data[:40] + bytes(len(data) - 40))  # same size and time: not decoded
    # again (the previous check stands)
    os.utime(damaged, ns=(before.st_atime_ns, before.st_mtime_ns))
    build_run(config, tmp_path / "run")
    os.utime(damaged)  # a new time: decoded again
    with pytest.raises(UserError, match=f"cannot be decoded: {damaged} "):
        build_run(config, tmp_path / "run")


def test_a_damaged_file_to_predict_is_named(tmp_path):
    write_folder(tmp_path / "images")
    _, run = build_run(FOLDER + f"image_folder.directory = '{tmp_path / 'images'}'",
                       tmp_path / "run")
    assert run.datasets[0].train.cardinality() == 6  # known: no counting pass
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=rf"^{tmp_path / 'new' / 'notes.txt'} is damaged or "
                       r"unreadable \(InvalidArgumentError: .*\)\. Fix: pass only intact files"):
        predict_files(run, str(tmp_path / "new"))


# -- through the command line: exit status 2, one line, no traceback, no model_dir ------------

def cli_error(tmp_path, *args) -> str:
    model_dir = tmp_path / "run"
    result = run_cli(*args, f"--model_dir={model_dir}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert not model_dir.exists(), "a failed start wrote to model_dir"
    return result.stderr[result.stderr.index("error:"):]


SYNTHETIC_CLI = ["--gin_file=gin/mlp.gin",
                 "--gin_bindings=Experiment.dataset = @datasets.synthetic",
                 "--gin_bindings=Experiment.train_steps = 4"]


def test_cli_model_as_loss(tmp_path):
    message = cli_error(tmp_path, *SYNTHETIC_CLI, "--gin_bindings=Experiment.loss = @models.cnn")
    assert message.startswith("error: Experiment.loss got @models.cnn, which is a model "
                              "plugin; Experiment.loss needs a loss plugin")


def test_cli_head_wider_than_its_classes(tmp_path):
    message = cli_error(
        tmp_path, *SYNTHETIC_CLI, "--gin_bindings=Experiment.dataset = @datasets.synthetic_heads",
        "--gin_bindings=Experiment.model = @models.multi_head",
        "--gin_bindings=models.multi_head.trunk = @models.mlp",
        "--gin_bindings=models.multi_head.heads = [@b/Head()]",
        "--gin_bindings=b/Head.name = 'b'", "--gin_bindings=b/Head.outputs = 10")
    assert "Head 'b' of model 'multi_head' outputs 10 values per example" in message


def test_cli_eval_best_without_a_best_metric(tmp_path):
    message = cli_error(tmp_path, *SYNTHETIC_CLI, "--mode=eval", "--checkpoint=best")
    assert "Experiment.best_checkpoint_metric is set. Fix: set it" in message
