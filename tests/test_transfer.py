"""Transfer learning with InceptionV3: frozen backbone, fine-tuning, weights, clear errors."""

import json
import logging
import textwrap

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from framework import assembly, modes, registry
from framework.bench import variants
from framework.data import DatasetInfo
from framework.data import training_batches
from framework.errors import UserError
from framework.experiment import from_config
from framework.feature_cache import FeatureCache, cache_key
from plugins.models import inception_v3 as inception
from test_image_folder import COLOURS, write_images

INFO = DatasetInfo(name="t", input_shape=(75, 75, 3), task="binary", num_outputs=1)


def backbone_of(model):
    return model.get_layer("features").get_layer("inception_v3")


def test_frozen_backbone_does_not_change_while_the_head_learns(tmp_path):
    experiment = transfer_experiment(tmp_path, """
        optimizers.rmsprop.learning_rate = 1e-3
        Experiment.train_steps = 6
        Experiment.steps_per_loop = 3
    """)
    run = assembly.build(experiment, str(tmp_path / "run"))
    backbone = backbone_of(run.model)
    assert not backbone.trainable and run.model.trainable_variables
    before_backbone = {v.path: v.numpy() for v in backbone.weights}
    before_head = {v.path: v.numpy() for v in run.model.trainable_variables}
    moving = [v.path for v in backbone.weights if "moving_" in v.path]
    assert len(moving) == 2 * 94  # every BatchNorm's mean and variance is checked
    trainer = assembly.build_trainer(run, experiment)
    assert trainer.train(modes.training_inputs(run, experiment)(0), 6).steps == 6
    for variable in backbone.weights:
        np.testing.assert_array_equal(variable.numpy(), before_backbone[variable.path],
                                      err_msg=variable.path)
    assert all(not np.array_equal(v.numpy(), before_head[v.path])
               for v in run.model.trainable_variables)
    assert {v.path for v in run.model.trainable_variables} == {
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


def transfer_experiment(tmp_path, extra="", config="transfer_inception.gin"):
    if not (tmp_path / "images").exists():
        for seed, (name, colour) in enumerate(COLOURS.items()):
            write_images(tmp_path / "images" / name, colour, 12, seed)
    gin.clear_config()
    config_file = tmp_path / "experiment.gin"
    config_file.write_text(textwrap.dedent(f"""
        include 'gin/{config}'
        image_folder.directory = '{tmp_path / "images"}'
        image_folder.image_size = (75, 75)
        inception_v3.weights = None
        inception_v3.dropout = 0.0
        Experiment.batch_size = 8
        Experiment.steps_per_loop = 1
        Experiment.eval_every = None
    """) + textwrap.dedent(extra))
    return from_config([str(config_file)], [])


def test_fine_tune_trains_exactly_the_top_blocks_at_the_multiplied_rate(tmp_path):
    experiment = transfer_experiment(tmp_path, """
        inception_v3.mode = 'fine_tune'
        inception_v3.fine_tune_blocks = 1
        inception_v3.fine_tune_learning_rate_multiplier = 0.1
        Experiment.optimizer = @optimizers.sgd
        optimizers.sgd.learning_rate = 1.0
    """)
    run = assembly.build(experiment, str(tmp_path / "run"))
    backbone = backbone_of(run.model)
    top_block = backbone.layers[backbone.layers.index(backbone.get_layer("mixed9")) + 1:]
    expected_trainable = {v.path for layer in top_block for v in layer.weights
                          if not isinstance(layer, keras.layers.BatchNormalization)}
    trainable = {v.path for v in backbone.trainable_variables}
    assert trainable == expected_trainable and trainable
    # One SGD step: head variables move by -1.0 * gradient, top-block ones by -0.1 * gradient;
    # everything else, BatchNorm statistics included, stays as it was.
    images = run.data.examples("train")
    features, labels = next(iter(training_batches(images, 8, experiment.seed)))
    variables = run.model.trainable_variables
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(run.loss_fn(labels, run.model(features, training=True)))
    gradients = tape.gradient(loss, variables)
    before = [v.numpy() for v in variables]
    frozen_before = {v.path: v.numpy() for v in backbone.non_trainable_weights}
    assembly.build_trainer(run, experiment).train(iter(run.strategy.experimental_distribute_dataset(
        training_batches(images, 8, experiment.seed))), 1)
    for variable, old, gradient in zip(variables, before, gradients):
        rate = 0.1 if variable.path in trainable else 1.0
        np.testing.assert_allclose(variable.numpy(), old - rate * gradient.numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=variable.path)
    for variable in backbone.non_trainable_weights:
        np.testing.assert_array_equal(variable.numpy(), frozen_before[variable.path],
                                      err_msg=variable.path)


def test_fine_tune_starts_from_the_frozen_runs_weights(tmp_path):
    frozen = transfer_experiment(tmp_path, "Experiment.train_steps = 3")
    frozen.run(str(tmp_path / "frozen"))
    trained = [v.numpy() for v in assembly.build(frozen, str(tmp_path / "frozen")).model.weights]
    fine_tune_settings = transfer_experiment(tmp_path, f"""
        Experiment.init_checkpoint = '{tmp_path / "frozen" / "checkpoints"}'
    """, config="fine_tune_inception.gin")
    fine_tune = assembly.build(fine_tune_settings, str(tmp_path / "fine_tune"))
    assert fine_tune.restored_from is None and fine_tune.model.name == "inception_v3_fine_tune"
    # Matched by the model's structure: Keras's automatic layer names differ between the
    # two models (conv2d_94 here, conv2d_188 there), the checkpoint's object graph does not.
    assert len(fine_tune.model.weights) == len(trained)
    for variable, value in zip(fine_tune.model.weights, trained):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)


def test_feature_cache_is_written_once_reused_and_invalidated(tmp_path, caplog, monkeypatch):
    shared = tmp_path / "shared_cache"
    extra = f"Experiment.train_steps = 4\nExperiment.feature_cache_dir = '{shared}'\n"
    with caplog.at_level(logging.INFO):
        first = transfer_experiment(tmp_path, extra)
        first.run(str(tmp_path / "first"))
    assert "Feature cache: computing the train features" in caplog.text
    run = assembly.build(first, str(tmp_path / "first"))
    assert run.trained_model is run.model.get_layer("head")  # only the head trains
    (key,) = [p.name for p in shared.iterdir()]
    # The cached features are what the backbone computes: the full model on the images
    # and the head on the features agree.
    images, _ = next(iter(run.datasets[0].eval.batch(100)))
    features, _ = next(iter(run.data.examples("eval").batch(100)))
    np.testing.assert_allclose(run.model(images), run.trained_model(features), atol=1e-5)

    def no_backbone(*args):
        raise AssertionError("the backbone ran although the features were cached")
    monkeypatch.setattr(FeatureCache, "_compute", no_backbone)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        transfer_experiment(tmp_path, extra).run(str(tmp_path / "second"))
    assert "Feature cache: reusing" in caplog.text
    monkeypatch.undo()
    transfer_experiment(tmp_path, extra + "image_folder.image_size = (80, 80)\n").run(
        str(tmp_path / "third"))
    assert len(list(shared.iterdir())) == 2 and key in [p.name for p in shared.iterdir()]


def test_feature_cache_is_off_with_augmentation(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        experiment = transfer_experiment(tmp_path, "image_folder.flip = True\n")
        run = assembly.build(experiment, str(tmp_path / "run"))
    assert "Feature cache off: the dataset augments its training images" in caplog.text
    assert run.trained_model is run.model and not run.data.features_cached


def test_feature_cache_benchmark_times_an_epoch_both_ways(tmp_path):
    experiment = transfer_experiment(tmp_path)  # writes the images, parses the config
    figures = variants.run_feature_cache()
    train_size = registry.build(experiment.plugins["dataset"]).info.train_size
    assert figures["epoch_steps"] == train_size // 8 >= 1
    assert figures["epoch_seconds_recomputing"] > 0 and figures["epoch_seconds_cached"] > 0
    assert figures["cache_speedup"] == pytest.approx(
        figures["epoch_seconds_recomputing"] / figures["epoch_seconds_cached"])


def test_transfer_config_runs_on_a_three_class_folder(tmp_path):
    for seed, (name, colour) in enumerate({**COLOURS, "green": (0.1, 0.9, 0.1)}.items()):
        write_images(tmp_path / "images" / name, colour, 10, seed)
    experiment = transfer_experiment(tmp_path, "Experiment.train_steps = 2")
    results = experiment.run(str(tmp_path / "run"))
    info = json.loads((tmp_path / "run" / "dataset_info.json").read_text())
    assert info["task"] == "classification" and info["num_outputs"] == 3
    assert results["step"] == 2 and set(results["eval"]) == {"loss", "accuracy"}


def test_fine_tune_run_resumes_with_its_scaled_optimizer(tmp_path):
    extra = "inception_v3.mode = 'fine_tune'\nExperiment.train_steps = {}\n"
    first = transfer_experiment(tmp_path, extra.format(2))
    untrained = assembly.build(first, str(tmp_path / "untrained"))
    fresh_slots = [v.numpy() for v in untrained.optimizer_groups[1][0].variables]
    first.run(str(tmp_path / "run"))
    resumed = assembly.build(transfer_experiment(tmp_path, extra.format(4)), str(tmp_path / "run"))
    assert resumed.restored_from.endswith("ckpt-2")
    assert len(resumed.optimizer_groups) == 2  # the head's optimizer and the 0.1x copy
    restored = [v.numpy() for v in resumed.optimizer_groups[1][0].variables]
    # Two steps moved the scaled optimizer's slots, and the checkpoint brought them back.
    assert any(not np.array_equal(r, f) for r, f in zip(restored, fresh_slots))


def test_the_feature_cache_is_keyed_by_the_weights_it_computes_with(tmp_path):
    """Keyed at first use, so weights loaded after the builder made the cache (a resumed
    checkpoint, Experiment.init_checkpoint) choose its folder."""
    extractor = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    cache = FeatureCache(str(tmp_path), extractor, "fingerprint")
    extractor.layers[0].kernel.assign(np.ones((3, 2), np.float32))  # loaded after the build
    examples = tf.data.Dataset.from_tensor_slices((np.ones((4, 3), np.float32), np.zeros(4)))
    features = next(iter(cache.features("train", examples).batch(4)))[0]
    np.testing.assert_allclose(features.numpy(), np.full((4, 2), 3.0))
    assert [p.name for p in tmp_path.iterdir()] == [cache_key("fingerprint", extractor)]
