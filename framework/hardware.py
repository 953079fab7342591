"""What this machine's CPU can do, read once from /proc/cpuinfo (Linux x86).

Used to describe the machine (framework.auto_precision's cache key) and, in the benchmark,
what a plain TensorFlow process does here. Elsewhere (no /proc/cpuinfo: macOS, Windows, ARM without these flags)
every answer is the conservative one.
"""

import functools
import os

# The CPU features for which TensorFlow turns oneDNN on by itself on Linux x86
# (DefaultOneDnnPolicy in tensorflow/core/util/port.cc). Other platforms have other rules
# (on for Windows x86 and ARM Neoverse V1); this module knows Linux x86 only.
_TENSORFLOW_ONEDNN_FEATURES = {"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                               "amx_int8", "amx_bf16"}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo; empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def tensorflow_enables_onednn() -> bool:
    """Whether TensorFlow, left to itself (no TF_ENABLE_ONEDNN_OPTS), uses oneDNN here."""
    return bool(cpu_flags() & _TENSORFLOW_ONEDNN_FEATURES)


def onednn_enabled() -> bool:
    """Whether this process's TensorFlow uses oneDNN kernels (framework/__init__.py turns
    them on unless TF_ENABLE_ONEDNN_OPTS says otherwise), as the environment says:
    TensorFlow reads it once, when it loads, so a later change is not seen by either."""
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting is None:
        return tensorflow_enables_onednn()
    return setting.strip().lower() in ("1", "true")
