"""Transfer learning with InceptionV3: frozen backbone, weights from a file, clear errors."""

import gin
import keras
import numpy as np
import pytest

from framework import registry
from framework.data import DatasetInfo
from framework.errors import UserError
from framework.experiment import Experiment
from helpers import REPO
from plugins.models import inception_v3 as inception
from test_image_folder import COLOURS, write_images

INFO = DatasetInfo(name="t", input_shape=(75, 75, 3), task="binary", num_outputs=1)


def backbone_of(model):
    return next(layer for layer in model.layers if layer.name == "inception_v3")


def test_frozen_backbone_does_not_change_while_the_head_learns(tmp_path):
    for seed, (name, colour) in enumerate(COLOURS.items()):
        write_images(tmp_path / "images" / name, colour, 12, seed)
    gin.parse_config(f"""
        include '{REPO}/gin/transfer_inception.gin'
        image_folder.directory = '{tmp_path / "images"}'
        image_folder.image_size = (75, 75)
        inception_v3.weights = None
        optimizers.rmsprop.learning_rate = 1e-3
        Experiment.batch_size = 8
        Experiment.train_steps = 6
        Experiment.steps_per_loop = 3
        Experiment.eval_every = None
    """)
    experiment = Experiment()
    experiment.build(str(tmp_path / "run"))
    backbone = backbone_of(experiment.model)
    assert not backbone.trainable and experiment.model.trainable_variables
    before_backbone = {v.path: v.numpy() for v in backbone.weights}
    before_head = {v.path: v.numpy() for v in experiment.model.trainable_variables}
    moving = [v.path for v in backbone.weights if "moving_" in v.path]
    assert len(moving) == 2 * 94  # every BatchNorm's mean and variance is checked
    experiment.train(evaluate=False)
    for variable in backbone.weights:
        np.testing.assert_array_equal(variable.numpy(), before_backbone[variable.path],
                                      err_msg=variable.path)
    assert all(not np.array_equal(v.numpy(), before_head[v.path])
               for v in experiment.model.trainable_variables)
    assert {v.path for v in experiment.model.trainable_variables} == {
        "logits/kernel", "logits/bias"}


def test_scratch_mode_trains_everything():
    with registry.building():
        model = inception.inception_v3(INFO, mode="scratch", weights=None, dropout=0.0)
    assert backbone_of(model).trainable
    assert len(model.trainable_variables) > 100


def test_weights_load_from_a_local_file(tmp_path):
    keras.utils.set_random_seed(1)
    source = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                            input_shape=INFO.input_shape)
    path = str(tmp_path / "backbone.weights.h5")
    source.save_weights(path)
    keras.utils.set_random_seed(2)  # another random initialisation, overwritten by the file
    with registry.building():
        model = inception.inception_v3(INFO, weights=path)
    for loaded, saved in zip(backbone_of(model).weights, source.weights):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy())


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with registry.building(), pytest.raises(UserError, match="no such file"):
        inception.inception_v3(INFO, weights=str(tmp_path / "nothing.h5"))


def test_offline_imagenet_says_where_to_put_the_file(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")  # pylint: disable=broad-exception-raised
    monkeypatch.setattr("keras.src.applications.inception_v3.file_utils.get_file", offline)
    with registry.building(), pytest.raises(UserError) as error:
        inception.inception_v3(INFO, weights="imagenet")
    assert inception.NO_TOP_WEIGHTS_FILE in str(error.value)
    assert "inception_v3.weights = '/path/to/" in str(error.value)


def test_unknown_mode_is_a_clear_error():
    with registry.building(), pytest.raises(UserError, match="inception_v3.mode must be"):
        inception.inception_v3(INFO, mode="thawed", weights=None)
