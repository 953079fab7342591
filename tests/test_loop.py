"""The compiled loop: learning, the mirrored path, clipping, regularization."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from framework.data import training_batches
from framework.experiment import Experiment
from framework.registry import register

SMALL_CNN = """
Experiment.dataset = @datasets.synthetic
Experiment.model = @models.cnn
Experiment.loss = @losses.sparse_categorical_crossentropy
Experiment.optimizer = @optimizers.adam
Experiment.batch_size = 32
models.cnn.filters = 8
models.cnn.dense_units = 32
datasets.synthetic.train_size = 512
datasets.synthetic.eval_size = 128
"""


def built(tmp_path, extra=""):
    gin.parse_config(SMALL_CNN + extra)
    experiment = Experiment()
    experiment.build(str(tmp_path / "run"))
    return experiment


def iterator_of(experiment, start_step=0):
    batches = training_batches(experiment.dataset.train, experiment.batch_size,
                               experiment.seed, start_step)
    return iter(experiment.strategy.experimental_distribute_dataset(batches))


def per_step_losses(experiment, steps):
    iterator, losses = iterator_of(experiment), []
    for _ in range(steps):
        experiment.trainer.train(iterator, 1)
        losses.append(experiment.trainer.train_results()["loss"])
    return losses


def test_learns_and_counts_steps(tmp_path):
    experiment = built(tmp_path, "Experiment.model = @models.mlp")
    before = experiment.evaluate()["accuracy"]
    experiment.trainer.train(iterator_of(experiment), 60)
    after = experiment.evaluate()
    assert int(experiment.global_step.numpy()) == 60
    assert before < 0.3 and after["accuracy"] > 0.95
    assert int(experiment.optimizer.iterations.numpy()) == 60


def test_mirrored_over_two_logical_cpus_agrees_with_one_device(tmp_path):
    one = built(tmp_path / "one", "Experiment.strategy = @strategies.default")
    one_losses = per_step_losses(one, 6)
    gin.clear_config()
    mirrored = built(tmp_path / "two", "Experiment.strategy = @strategies.mirrored\n"
                                       "strategies.mirrored.logical_cpus = 2")
    assert mirrored.strategy.num_replicas_in_sync == 2
    mirrored_losses = per_step_losses(mirrored, 6)
    np.testing.assert_allclose(mirrored_losses, one_losses, rtol=1e-5, atol=1e-5)
    assert one_losses[-1] < one_losses[0]  # it trains, so the agreement is not trivial
    for a, b in zip(one.model.weights, mirrored.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize("strategy", ["@strategies.default", "@strategies.mirrored"])
def test_gradient_clipping_bounds_the_update(tmp_path, strategy):
    # With SGD at rate 1, the update of all variables together is the clipped gradient.
    experiment = built(tmp_path, f"""
        Experiment.optimizer = @optimizers.sgd
        optimizers.sgd.learning_rate = 1.0
        Experiment.clip_gradient_norm = 0.01
        Experiment.strategy = {strategy}
        strategies.mirrored.logical_cpus = 2
    """)
    before = [v.numpy() for v in experiment.model.trainable_variables]
    experiment.trainer.train(iterator_of(experiment), 1)
    after = [v.numpy() for v in experiment.model.trainable_variables]
    update_norm = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
    assert update_norm == pytest.approx(0.01, rel=1e-3)


@register.model
def l2_regularized_mlp(info, l2=0.0):
    """A test model whose Dense kernels carry an L2 penalty (none when l2 is 0)."""
    penalty = keras.regularizers.L2(l2) if l2 else None
    return keras.Sequential([
        keras.Input(info.input_shape), keras.layers.Flatten(),
        keras.layers.Dense(32, "relu", kernel_regularizer=penalty),
        keras.layers.Dense(info.num_outputs, kernel_regularizer=penalty),
    ])


def test_regularization_loss_is_part_of_the_objective(tmp_path):
    # The optimized loss includes the model's penalties, so the kernels shrink compared
    # with the same run without them; the data loss metric stays free of them.
    norms = {}
    for penalty in (0.0, 1.0):
        gin.clear_config()
        experiment = built(tmp_path / str(penalty), f"""
            Experiment.model = @models.l2_regularized_mlp
            models.l2_regularized_mlp.l2 = {penalty}""")
        assert bool(experiment.model.losses) == bool(penalty)
        experiment.trainer.train(iterator_of(experiment), 30)
        kernels = [w for w in experiment.model.trainable_variables if "kernel" in w.path]
        norms[penalty] = float(tf.linalg.global_norm(kernels))
    assert norms[1.0] < 0.7 * norms[0.0], norms
