"""Reading the CPU's features, and TensorFlow's oneDNN default that follows from them."""

import platform

import pytest

from framework import hardware


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="reads the flags of Linux x86 /proc/cpuinfo")
def test_cpu_flags_are_read_from_proc_cpuinfo():
    assert {"fpu", "sse2", "lm"} <= hardware.cpu_flags()  # every x86-64 CPU has them


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "fma"}, False),  # e.g. AMD EPYC Rome: TensorFlow leaves oneDNN off
    ({"avx512f", "avx512_vnni"}, True),
    ({"avx2", "avx_vnni"}, True),
    ({"avx512f", "amx_tile", "amx_bf16"}, True),
])
def test_tensorflow_turns_onednn_on_by_itself_for_neural_network_features(monkeypatch, flags,
                                                                           expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert hardware.tensorflow_enables_onednn() is expected
    assert hardware.onednn_enabled() is expected
    for setting, enabled in [("0", False), ("false", False), ("1", True), ("True", True)]:
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", setting)
        assert hardware.onednn_enabled() is enabled
