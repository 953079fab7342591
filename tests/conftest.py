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


@pytest.fixture(autouse=True)
def verified_files_in_a_temp_folder(tmp_path_factory, monkeypatch):
    """Dataset plugins remember which files they have verified in the user's cache folder
    (framework.verified_files); tests keep those marks in a temporary folder of their own."""
    from framework import verified_files  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(verified_files, "MARKS_DIR",
                        str(tmp_path_factory.mktemp("verified_files")))


@pytest.fixture(autouse=True)
def precision_decisions_in_a_temp_folder(tmp_path_factory, monkeypatch):
    """'auto' precision caches its measured decisions in the user's cache folder; tests
    share one temporary folder per test process instead (framework.auto_precision)."""
    from framework import auto_precision  # pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.getbasetemp() / "precision_decisions"
    monkeypatch.setattr(auto_precision, "CACHE_DIR", str(folder))
