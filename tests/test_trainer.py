"""The compiled loop: learning, the mirrored path, clipping, regularization."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from framework import assembly
from framework.distribute import split_cpu
from framework.registry import register
from configs import MIRRORED, SMALL_CNN
from helpers import build_run, evaluate, training_iterator

def built(tmp_path, extra=""):
    """(experiment, run, trainer) of the small CNN config."""
    experiment, run = build_run(SMALL_CNN + extra, tmp_path / "run")
    return experiment, run, assembly.build_trainer(run, experiment)


def per_step_losses(experiment, run, trainer, steps):
    iterator, losses = training_iterator(experiment, run), []
    for _ in range(steps):
        trainer.train(iterator, 1)
        losses.append(trainer.results()["loss"])
    return losses


def test_learns_and_counts_steps(tmp_path):
    experiment, run, trainer = built(tmp_path, "Experiment.model = @models.mlp")
    before = evaluate(experiment, run)["accuracy"]
    output = trainer.train(training_iterator(experiment, run), 60)
    after = evaluate(experiment, run)
    assert output.steps == 60 and output.nonfinite_steps == 0
    assert output.first_nonfinite_step == -1
    assert run.step == 60
    assert before < 0.3 and after["accuracy"] > 0.95
    assert int(run.optimizer.iterations.numpy()) == 60


def test_mirrored_over_two_logical_cpus_agrees_with_one_device(tmp_path):
    _, one, _ = one_parts = built(tmp_path / "one", "Experiment.strategy = @strategies.default")
    one_losses = per_step_losses(*one_parts, 6)
    gin.clear_config()
    mirrored_parts = built(tmp_path / "two", MIRRORED)
    mirrored = mirrored_parts[1]
    assert mirrored.strategy.num_replicas_in_sync == 2
    mirrored_losses = per_step_losses(*mirrored_parts, 6)
    np.testing.assert_allclose(mirrored_losses, one_losses, rtol=1e-5, atol=1e-5)
    assert one_losses[-1] < one_losses[0]  # it trains, so the agreement is not trivial
    for a, b in zip(one.model.weights, mirrored.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize("strategy", ["@strategies.default", "@strategies.mirrored"])
def test_gradient_clipping_bounds_the_update(tmp_path, strategy):
    # With SGD at rate 1, the update of all variables together is the clipped gradient.
    experiment, run, trainer = built(tmp_path, f"""
        Experiment.optimizer = @optimizers.sgd
        optimizers.sgd.learning_rate = 1.0
        Experiment.clip_gradient_norm = 0.01
        Experiment.strategy = {strategy}
        strategies.mirrored.logical_cpus = 2
    """)
    before = [v.numpy() for v in run.model.trainable_variables]
    trainer.train(training_iterator(experiment, run), 1)
    after = [v.numpy() for v in run.model.trainable_variables]
    update_norm = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after, before)))
    assert update_norm == pytest.approx(0.01, rel=1e-3)


class CountingReduction(tf.distribute.ReductionToOneDevice):
    """Cross-device reduction that records the number of values of each reduction traced."""

    def __init__(self):
        super().__init__()
        self.reductions = []

    def reduce(self, reduce_op, per_replica_value, destinations, options=None):
        self.reductions.append(1)
        return super().reduce(reduce_op, per_replica_value, destinations, options)

    def batch_reduce(self, reduce_op, value_destination_pairs, options=None):
        self.reductions.append(len(value_destination_pairs))
        return super().batch_reduce(reduce_op, value_destination_pairs, options)


@register.strategy
def counting_mirrored():
    """Mirrored over 2 logical CPUs, its reductions recorded (see CountingReduction)."""
    return tf.distribute.MirroredStrategy(devices=split_cpu(2),
                                          cross_device_ops=CountingReduction())


@pytest.mark.parametrize("extra", ["", "Experiment.clip_gradient_norm = 0.5",
                                   "hooks.nan_guard.action = 'skip'"])
def test_a_mirrored_step_reduces_the_gradients_once(tmp_path, extra):
    # One all-reduce per step carries every gradient and the loss; Keras's apply_gradients
    # adds none, and the norm, clipping and the finiteness flag need none of their own.
    experiment, run, trainer = built(tmp_path, f"""
        Experiment.strategy = @strategies.counting_mirrored
        {extra}""")
    reductions = run.strategy.extended._cross_device_ops.reductions  # pylint: disable=protected-access
    iterator = training_iterator(experiment, run)
    trainer.train(iterator, 1)  # traces the step once, for any number of steps
    assert reductions == [len(run.model.trainable_variables) + 1]
    before = [v.numpy() for v in run.model.trainable_variables]
    trainer.train(iterator, 3)
    assert len(reductions) == 1  # no retrace
    # The update is the summed gradient's, applied once: the first replica's copy moved
    # and both copies agree.
    for variable, old in zip(run.model.trainable_variables, before):
        first, second = (v.numpy() for v in run.strategy.experimental_local_results(
            variable.value))
        np.testing.assert_array_equal(first, second)
    assert any(np.abs(v.numpy() - b).max() > 0 for v, b in
               zip(run.model.trainable_variables, before))


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
        experiment, run, trainer = built(tmp_path / str(penalty), f"""
            Experiment.model = @models.l2_regularized_mlp
            models.l2_regularized_mlp.l2 = {penalty}""")
        assert bool(run.model.losses) == bool(penalty)
        trainer.train(training_iterator(experiment, run), 30)
        assert ("regularization_loss" in trainer.summary_scalars()) == bool(penalty)
        kernels = [w for w in run.model.trainable_variables if "kernel" in w.path]
        norms[penalty] = float(tf.linalg.global_norm(kernels))
    assert norms[1.0] < 0.7 * norms[0.0], norms
