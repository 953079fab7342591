"""Plugins that live outside this repo: a gin `import` line and an installed entry point.

The plugin package is written into the test's temporary directory only.
"""

import textwrap

import pytest

from helpers import run_cli

PLUGIN_MODULE = '''
"""A plugin package that is not part of the framework."""
import keras
from framework.registry import register


@register.model
def tiny_convnet(info, filters=3):
    """An outside model: one small convolution and a linear read-out."""
    return keras.Sequential([
        keras.Input(info.input_shape),
        keras.layers.Conv2D(filters, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(info.num_outputs),
    ])


@register.loss
def halved_crossentropy():
    """An outside loss: half the usual cross-entropy, one value per example."""
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    return lambda labels, logits: 0.5 * base(labels, logits)
'''

EXPERIMENT = """
Experiment.dataset = @datasets.synthetic
Experiment.model = @models.tiny_convnet
Experiment.loss = @losses.halved_crossentropy
Experiment.optimizer = @optimizers.adam
Experiment.batch_size = 32
Experiment.train_steps = 5
models.tiny_convnet.filters = 5
"""


@pytest.fixture
def plugin_package(tmp_path):
    package = tmp_path / "site" / "outside_plugins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(PLUGIN_MODULE)
    return tmp_path / "site"


def check_ran_with_outside_plugins(result, model_dir):
    assert result.returncode == 0, result.stderr
    config = (model_dir / "operative_config.gin").read_text()
    assert "tiny_convnet.filters = 5" in config
    assert "Experiment.loss = @losses.halved_crossentropy" in config


def test_gin_import_line_loads_a_plugin_module(tmp_path, plugin_package):
    gin_file = tmp_path / "outside.gin"
    gin_file.write_text("import outside_plugins.models\n" + EXPERIMENT)
    model_dir = tmp_path / "run"
    result = run_cli(f"--gin_file={gin_file}", f"--model_dir={model_dir}",
                     env={"PYTHONPATH": str(plugin_package)})
    check_ran_with_outside_plugins(result, model_dir)


def test_installed_entry_point_registers_plugins(tmp_path, plugin_package):
    # What `pip install` leaves for a package that declares, in its pyproject.toml,
    #   [project.entry-points."framework.plugins"]
    #   outside = "outside_plugins.models"
    dist_info = plugin_package / "outside_plugins-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-plugins\n"
                                        "Version: 0.1\n")
    (dist_info / "entry_points.txt").write_text(textwrap.dedent("""
        [framework.plugins]
        outside = outside_plugins.models
    """))
    gin_file = tmp_path / "outside.gin"
    gin_file.write_text(EXPERIMENT)  # no import line: the entry point did it
    model_dir = tmp_path / "run"
    env = {"PYTHONPATH": str(plugin_package)}
    result = run_cli(f"--gin_file={gin_file}", f"--model_dir={model_dir}", env=env)
    check_ran_with_outside_plugins(result, model_dir)
    listing = run_cli("--list_plugins", env=env).stdout
    assert "models.tiny_convnet: An outside model" in listing


def test_broken_import_line_says_how_to_fix(tmp_path):
    gin_file = tmp_path / "broken.gin"
    gin_file.write_text("import not_installed_plugins\n" + EXPERIMENT)
    result = run_cli(f"--gin_file={gin_file}", f"--model_dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "install the plugin package or put its folder on PYTHONPATH" in result.stderr
    assert not (tmp_path / "run").exists()
