"""The parts of the TensorBoard summaries, without a run: the hyperparameters HParams
compares, the metrics it shows, the captions and pictures of the Images tab."""

import inspect

import gin
import numpy as np
import pytest

from framework import figures, registry
from framework.eval_images import HeadPredictions, prediction_captions
from framework.experiment import Experiment  # noqa: F401  (registers its configurables)
from framework.heads import Head  # noqa: F401  (registers the Head configurable)
from framework.monitoring import hparams_metrics
from framework.run_record import KEY_SETTINGS, hyperparameters

MULTI_HEAD = """
STEPS = 50
Experiment.dataset = @datasets.synthetic_heads
Experiment.loss = @losses.sparse_categorical_crossentropy
Experiment.optimizer = @optimizers.adam
Experiment.model = @models.multi_head
models.multi_head.trunk = @models.cnn
models.multi_head.heads = [@coarse/Head()]
coarse/Head.name = 'coarse'
Head.loss_weight = 0.25
Experiment.train_steps = %STEPS
optimizers.adam.learning_rate = @schedules.cosine_decay()
schedules.cosine_decay.initial_learning_rate = 0.002
Experiment.clip_gradient_norm = 1.0
Experiment.eval_every = 10
Monitoring.histogram_every = 5
"""


def test_hyperparameters_are_the_resolved_settings_with_the_key_ones_always():
    gin.parse_config(MULTI_HEAD)
    values = hyperparameters(gin.config_str(), compute_policy="mixed_bfloat16")
    assert {name: values[name] for name in KEY_SETTINGS} == {
        "Batch size": 128, "Dataset": "synthetic_heads", "Model": "multi_head",
        "Optimizer": "adam", "Precision": "mixed_bfloat16", "Seed": 42, "Train steps": 50,
        # The schedule as built: its unset length is the run's, the macro's value.
        "Learning rate": "cosine_decay(0.002, 50, 0.0)"}
    # Every parameter of the plugins the run uses, defaults included, references by name;
    # a scoped head inherits the unscoped binding, as gin gives it.
    filters = inspect.signature(registry.find("models.cnn").function).parameters["filters"]
    assert values["models.cnn.filters"] == filters.default
    assert values["models.multi_head.trunk"] == "cnn"
    assert values["models.multi_head.heads"].startswith("[Head('coarse', ")
    assert (values["coarse/Head.name"], values["coarse/Head.loss_weight"]) == ("coarse", 0.25)
    assert values["schedules.cosine_decay.initial_learning_rate"] == 0.002
    # Experiment's other settings only where they change what is learned.
    assert values["Experiment.clip_gradient_norm"] == 1.0
    assert not [name for name in values if name.startswith(("Experiment.eval", "Monitoring"))]
    for name, value in values.items():
        assert isinstance(value, (bool, int, float, str)), (name, value)
        assert "%" not in name and not name.endswith(".") and "STEPS" not in name, name
        assert "%" not in str(value) and "@" not in str(value), (name, value)
    # The precision asked for, when what it became is not given.
    assert hyperparameters(gin.config_str())["Precision"] == "float32"


def test_an_unbound_learning_rate_is_the_optimizers_default():
    gin.parse_config("Experiment.optimizer = @optimizers.sgd\nExperiment.model = @models.mlp\n"
                     "Experiment.dataset = @datasets.synthetic\n")
    default = inspect.signature(registry.find("optimizers.sgd").function) \
        .parameters["learning_rate"].default
    values = hyperparameters(gin.config_str())
    assert (values["Learning rate"], values["Optimizer"], values["Model"]) == \
        (default, "sgd", "mlp")


def test_hparams_metrics_are_the_eval_metrics_then_losses_not_every_scalar():
    metrics = hparams_metrics({"loss": 1.0, "loss/fine": 1.0, "accuracy/fine": 0.5,
                               "loss/coarse": 1.0, "accuracy/coarse": 0.5,
                               "accuracy/all_heads": 0.4})
    names = [(m.as_proto().name.group, m.as_proto().name.tag) for m in metrics]
    assert names == [("eval", "accuracy/fine"), ("eval", "accuracy/coarse"),
                     ("eval", "accuracy/all_heads"), ("eval", "loss"), ("eval", "loss/fine"),
                     ("eval", "loss/coarse"), ("train", "loss")]


def heads(*rows):
    """HeadPredictions from (name, predicted, truth, confidence) rows of one example each."""
    return [HeadPredictions(name, [predicted], [truth], np.array([confidence]),
                            np.array([predicted == truth]))
            for name, predicted, truth, confidence in rows]


def test_captions_put_each_head_on_its_own_line():
    assert prediction_captions(heads((None, "Shirt", "Coat", 0.6))) == ["✗ Shirt 60%\n(Coat)"]
    assert prediction_captions(heads(("fine", "Shirt", "Shirt", 0.6),
                                     ("coarse", "bottoms", "tops", 0.9))) == \
        ["fine: Shirt 60%\n✗ coarse: bottoms 90% (tops)"]
    # One character per head (a captcha): the string they spell, with the joint confidence.
    assert prediction_captions(heads(("c0", "4", "4", 0.5), ("c1", "2", "2", 0.5))) == \
        ["42 25%\n(42)"]
    assert prediction_captions(heads((None, "a very long class name", "x", 1.0))) == \
        ["✗ a very long… 100%\n(x)"]


def test_confusion_matrix_and_prediction_grid_are_large():
    matrix = np.arange(100, dtype=np.float32).reshape(10, 10)
    image = figures.confusion_matrix_image(matrix, [f"class {i}" for i in range(10)], "t")
    assert image.dtype == np.uint8 and image.shape[2] == 4
    assert image.shape[0] >= figures.MIN_WIDTH and image.shape[1] >= figures.MIN_WIDTH
    grid = figures.prediction_grid(np.zeros((16, 8, 8, 1)), ["a 50%\n(b)"] * 16,
                                   np.zeros(16, bool))
    assert grid.shape[1] >= figures.MIN_WIDTH
    # Every example is drawn (black squares in each cell of the 4 x 4 grid) ...
    black = np.all(grid[..., :3] < 10, axis=-1)
    height, width = black.shape
    for row in range(4):
        for column in range(4):
            assert black[row * height // 4:(row + 1) * height // 4,
                         column * width // 4:(column + 1) * width // 4].any(), (row, column)
    # ... and captioned in red, as all are wrong (matplotlib's tab:red).
    assert (np.abs(grid[..., :3].astype(int) - (214, 39, 40)).sum(axis=-1) < 30).any()


def test_long_captions_go_beside_the_images_without_running_into_each_other():
    caption = "✗ fine: T-shirt/top 65% (Ankle boot)\n✗ coarse: footwear 90% (tops)"
    grid = figures.prediction_grid(np.zeros((16, 8, 8, 1)), [caption] * 16,
                                   np.zeros(16, bool))
    white = np.all(grid[..., :3] > 245, axis=-1)
    assert white[:, -3:].all()  # nothing cut at the right edge
    # Two columns of (image, caption) with a blank band between them.
    width = white.shape[1]
    assert white[:, width // 3:2 * width // 3].all(axis=0).any()


def test_activation_maps_are_upscaled_pixel_for_pixel_into_labelled_tiles():
    maps = np.zeros((5, 5, 2), np.float32)
    maps[2, 2, 0] = 1.0  # one bright pixel in the first map
    image = figures.activation_figure(np.zeros((5, 5, 1)), maps, "conv2d, example 1 of 1")
    # viridis's top: the bright pixel, a square of one colour (no interpolation), wide
    # enough that its tile is at least 96 pixels for the 5 pixels of the map.
    bright = np.all(np.abs(image[..., :3].astype(int) - (253, 231, 36)) < 8, axis=-1)
    rows, columns = np.nonzero(bright)
    height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
    assert width >= 96 / 5 and abs(height - width) <= 1
    assert bright[rows.min():rows.max() + 1, columns.min():columns.max() + 1].all()


@pytest.mark.parametrize("count", [3, 36])
def test_confusion_matrix_names_are_cut_and_large_matrices_grow(count):
    names = [f"a rather long class name {i}" for i in range(count)]
    image = figures.confusion_matrix_image(np.eye(count), names, "t")
    assert image.shape[1] >= max(figures.MIN_WIDTH, (0.6 * count + 3) * figures.DPI) - 1
