"""The plugin registry: decorators, gin names, deferred gin calls, the listing."""

import gin
import keras
import pytest

from framework import registry
from framework.data import DatasetInfo
from framework.errors import UserError
from framework.registry import register

INFO = DatasetInfo(name="t", input_shape=(28, 28, 1), task="classification", num_outputs=10)


@gin.configurable
def receive(value=None):
    return value


def bound(binding_lines: str):
    gin.parse_config(binding_lines)
    return receive()


def test_factory_form_builds_with_context_and_gin_parameters():
    value = bound("receive.value = @models.cnn\nmodels.cnn.filters = 8")
    model = registry.build(value, INFO)
    assert isinstance(model, keras.Model)
    assert model.layers[0].filters == 8
    assert model.output_shape == (None, 10)


def test_call_form_is_deferred_until_built():
    for line in ["@models.cnn()", "@datasets.synthetic()", "@optimizers.adam()",
                 "@losses.sparse_categorical_crossentropy"]:
        gin.clear_config()
        gin.parse_config("models.cnn.filters = 4\noptimizers.adam.learning_rate = 0.5\n"
                         f"receive.value = {line}")
        value = receive()
        assert not isinstance(value, (keras.Model, keras.optimizers.Optimizer))
    gin.parse_config("receive.value = @optimizers.adam()")
    optimizer = registry.build(receive())
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(0.5)
    gin.parse_config("receive.value = @models.cnn()")
    assert registry.build(receive(), INFO).layers[0].filters == 4


def test_deferred_call_keeps_the_bindings_read_at_call_time():
    gin.parse_config("models.mlp.hidden_units = (7,)\nreceive.value = @models.mlp()")
    deferred = receive()
    assert "hidden_units=(7,)" in repr(deferred)
    gin.clear_config()  # later changes to the config do not reach the deferred call
    model = registry.build(deferred, INFO)
    assert model.layers[1].units == 7


def test_loss_plugin_returns_one_loss_per_example():
    loss = registry.build(bound("receive.value = @losses.sparse_categorical_crossentropy"))
    assert tuple(loss(keras.ops.array([1, 2]), keras.ops.zeros((2, 10))).shape) == (2,)


def test_schedule_plugin_as_learning_rate():
    gin.parse_config("""
        receive.value = @optimizers.sgd
        optimizers.sgd.learning_rate = @schedules.linear_warmup()
        schedules.linear_warmup.warmup_steps = 10
        schedules.linear_warmup.after = @schedules.cosine_decay()
        schedules.cosine_decay.initial_learning_rate = 1.0
        schedules.cosine_decay.decay_steps = 100
    """)
    optimizer = registry.build(receive())
    rate = optimizer._learning_rate  # the schedule object Keras keeps
    assert float(rate(0)) == pytest.approx(0.1)
    assert float(rate(9)) == pytest.approx(1.0)
    assert float(rate(60)) == pytest.approx(0.5, abs=1e-6)


def test_every_kind_has_its_builtins():
    assert {"fashion_mnist", "mnist", "synthetic", "linear_points", "quadratic_points"} <= set(
        registry.plugins("dataset"))
    assert {"cnn", "mlp", "linear"} <= set(registry.plugins("model"))
    assert {"sparse_categorical_crossentropy", "categorical_crossentropy",
            "binary_crossentropy", "mean_squared_error"} <= set(registry.plugins("loss"))
    assert {"sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax",
            "nadam"} <= set(registry.plugins("optimizer"))
    assert {"default", "one_device", "mirrored", "multi_worker"} <= set(
        registry.plugins("strategy"))


def test_describe_lists_parameters_defaults_and_docstrings():
    text = registry.describe()
    assert "model plugins (gin module 'models'):" in text
    assert "models.cnn: [Conv(filters) x convs_per_block -> MaxPool" in text
    assert "      filters = 64" in text
    assert "optimizers.sgd: Stochastic gradient descent" in text


def test_same_name_from_another_module_is_refused():
    def cnn(info):
        return info
    cnn.__module__ = "someone_elses.plugins"
    with pytest.raises(UserError, match="Two model plugins are called 'cnn'"):
        register.model(cnn)


def test_find_by_gin_name_or_unambiguous_short_name():
    assert registry.find("models.cnn").name == "cnn"
    assert registry.find("cnn").kind == "model"
    assert registry.find("models.nothing") is None


def test_crossentropy_fits_one_logit_or_several():
    loss = registry.build(registry.find("losses.crossentropy").configurable)
    binary = loss(keras.ops.array([[1.0], [0.0]]), keras.ops.array([[3.0], [3.0]]))
    expected = keras.losses.binary_crossentropy(
        keras.ops.array([[1.0], [0.0]]), keras.ops.array([[3.0], [3.0]]), from_logits=True)
    assert keras.ops.convert_to_numpy(binary) == pytest.approx(keras.ops.convert_to_numpy(expected))
    sparse = loss(keras.ops.array([2, 0]), keras.ops.array([[0.0, 0.0, 5.0], [0.0, 0.0, 5.0]]))
    assert tuple(sparse.shape) == (2,) and float(sparse[0]) < 0.02 < float(sparse[1])
