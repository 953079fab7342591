"""Benchmark: the framework's loop against keras.Model.fit on the same work.

    python -m framework.bench --gin_file=gin/cnn.gin [--steps=300] [--repeats=3] \\
        [--variants=fit,fit_spe,loop] [--output=bench.json]

Builds the run a gin file describes (same model, data pipeline, global batch and
optimizer, through framework.assembly) and trains it `--steps` timed steps after
`--warmup_steps` untimed ones, once per variant and round, each in a fresh process,
variants interleaved within a round:

  fit             keras.Model.fit, steps_per_execution=1, no callbacks
  fit_plain       keras.Model.fit as a plain Keras script runs it: TensorFlow's own
                  defaults (float32; on Linux, oneDNN only on CPUs with AVX-512 VNNI/BF16,
                  AVX-VNNI or AMX, while the framework turns it on everywhere, see
                  framework/__init__.py) and the classic per-example shuffle + batch
  fit_spe         keras.Model.fit, steps_per_execution = the config's steps_per_loop
  loop            the framework's loop with the config's summaries and checkpoints
  loop_scalars    the same with TensorBoard limited to scalars (what `Monitoring` costs)
  main_job        the whole main job, `python -m framework.main` with the config as it is:
                  start to exit, evaluations, checkpoints and summaries included
  fit_job         what a plain Keras script does for the same job: model.fit for the same
                  epochs (eval_every steps each, validating after each) with a TensorBoard
                  and a ModelCheckpoint callback, start to exit
  feature_cache   for a model with a frozen feature extractor (the transfer configs): one
                  epoch of the loop's training steps recomputing the features, and one on
                  cached features (`python -m framework.bench_feature_cache` runs it on
                  generated images)

Reports medians over rounds, ratios to `fit` (and `fit_plain`, when it runs) within each
round (the machine is noisy), peak memory, time from process start to the end of the first
training call, time from the last output line to process exit, the training GFLOP/s as a
share of the FP32 peak, and, for the loop, the share of step time spent waiting for input
(framework.bench.measure says how each is measured). Prints a table and writes JSON.

Modules: rounds (the parent: fresh processes, rounds, medians, the table), variants (one
variant in its worker process), measure (profiler trace, FLOPs, peak, memory). Commands
beside it: framework.bench.outside (the main command against a plain model.fit script,
timed from outside), framework.bench.matrix (the speed settings side by side, for a GPU
machine), framework.bench.search_storage (the search's storages).
"""
