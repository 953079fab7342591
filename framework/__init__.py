"""The engine: settings (Experiment), the builder, the controller and the parts they drive.

It knows no particular dataset or model; those are plugins (see plugins/ and README.md).
"""

import os

# oneDNN's CPU kernels. TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI,
# BF16 or AMX; they train the CNN faster on AVX2 CPUs too (BUILD_NOTES.md, "Performance on
# the AMD EPYC"). Read once, when TensorFlow loads, so it must be set before the first
# `import tensorflow`; an explicit TF_ENABLE_ONEDNN_OPTS (0 turns them off) wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
