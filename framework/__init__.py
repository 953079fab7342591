"""The engine: registry, config, Experiment, loop, data, checkpoints and summaries.

It knows no particular dataset or model; those are plugins (see plugins/ and README.md).
"""
