"""Shared test set-up.

The CPU is split into two logical devices before TensorFlow starts, so that in-process
tests can run MirroredStrategy over two replicas (TensorFlow allows the split only once,
before its first op). Gin's global config is cleared around every test.
"""

import gin
import pytest

from framework import registry  # first: the package sets TensorFlow's defaults before it loads
import tensorflow as tf  # pylint: disable=wrong-import-order

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
registry.discover()


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()
