"""The benchmark command runs on a tiny configuration and writes its JSON (no timings
are asserted: those belong in BUILD_NOTES.md)."""

import json
import re
import subprocess
import sys

import keras
import pytest

from framework import config
from framework.bench import measure, variants
from framework.errors import UserError
from helpers import REPO, cli_environment

TINY = ["--gin_bindings=Experiment.dataset = @datasets.synthetic",
        "--gin_bindings=datasets.synthetic.train_size = 256",
        "--gin_bindings=datasets.synthetic.input_shape = (8, 8, 1)",
        "--gin_bindings=models.mlp.hidden_units = (8,)",
        "--gin_bindings=Experiment.model = @models.mlp",
        "--gin_bindings=Experiment.steps_per_loop = 2",
        "--gin_bindings=Experiment.train_steps = 20",  # the *_job variants' whole job
        "--gin_bindings=Experiment.eval_every = 10"]


def test_bench_compares_fit_and_the_loop_and_whole_jobs_and_writes_json(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "framework.bench", "--gin_file=gin/mlp.gin", *TINY,
         "--steps=4", "--warmup_steps=2", "--repeats=1",
         "--variants=fit,fit_plain,loop,main_job,fit_job",
         f"--output={output}"],
        cwd=REPO, env=cli_environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    medians = report["medians"]
    assert set(medians) == {"fit", "fit_plain", "loop", "main_job", "fit_job"}
    for variant in ("fit", "loop"):
        values = medians[variant]
        assert values["examples_per_second"] > 0 and values["peak_rss_mb"] > 0, variant
        assert values["seconds_last_output_to_exit"] >= 0, variant
        assert values["timed_steps"] == 4, variant
    assert medians["fit"]["ratio_to_fit"] == 1.0 and medians["fit_plain"]["ratio_to_fit_plain"] == 1.0
    assert medians["loop"]["ratio_to_fit_plain"] == pytest.approx(
        medians["loop"]["examples_per_second"] / medians["fit_plain"]["examples_per_second"])
    assert 0.0 <= medians["loop"]["input_wait_share"] <= 1.0
    peak = report["config"]["fp32_matmul_gflops"]
    for variant in ("fit", "loop"):  # rates from the counted FLOPs: 3 x (2*64*8 + 8 + ...)
        values = medians[variant]
        assert values["gflops_per_second"] > values["examples_per_second"] * 3 * 1032 / 1e9
        assert values["share_of_fp32_peak"] == pytest.approx(values["gflops_per_second"] / peak)
    for variant in ("main_job", "fit_job"):  # the same job: 2 epochs of 10 steps
        values = medians[variant]
        assert values["trained_steps"] == 20 and 0.0 <= values["final_eval_accuracy"] <= 1.0
        assert values["job_seconds"] > values["seconds_last_output_to_exit"] >= 0
    assert medians["fit_job"]["time_to_fit_job"] == 1.0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("variant | ex/s | × fit") and "job s" in lines[0]
    assert "of FP32 peak" in lines[0] and f"{peak:.0f} GFLOP/s here" in lines[-1]
    assert "× fit_plain" in lines[0] and len(lines) == 10
    # The policy each variant computed in, and why: the plain script's is fixed, the
    # config's 'auto' is measured (or read from an earlier measurement) for the loop.
    assert "precision of fit_plain: float32 (set in the config)" in lines
    loop_precision = next(line for line in lines if line.startswith("precision of loop: "))
    assert re.search(r"(float32|mixed_bfloat16) \((cached: )?measured float32 [0-9.]+ ms, "
                     r"mixed_bfloat16 [0-9.]+ ms a step", loop_precision), loop_precision
    assert report["precision"]["loop"] == loop_precision.split(": ", 1)[1]


def test_feature_cache_variant_needs_a_frozen_feature_extractor():
    config.parse(["gin/mlp.gin"], [b.split("=", 1)[1] for b in TINY])
    with pytest.raises(UserError, match="needs a model with a frozen feature extractor"):
        variants.run_feature_cache()


def test_training_flops_are_three_forward_passes_as_the_profiler_counts_them():
    inputs = keras.Input((8, 8, 1))
    features = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(features))
    conv = 2 * 6 * 6 * 9 * 4 + 6 * 6 * 4  # multiply-adds and bias adds of a 6x6x4 output
    dense = 2 * 144 * 3 + 3
    assert measure.training_flops_per_example(model) == 3 * (conv + dense)


def test_the_matrix_runs_every_setting_in_its_own_process_against_the_float32_loop(
        monkeypatch):
    from framework.bench import matrix, rounds  # pylint: disable=import-outside-toplevel
    launched = []

    def launch(variant, gin_files, bindings, steps, warmup):
        launched.append((variant, bindings))
        speed = 200.0 if "Experiment.jit_compile = True" in bindings else 100.0
        return {"examples_per_second": speed, "step_ms": 1.0, "precision": "float32",
                "precision_reason": "set in the config"}

    monkeypatch.setattr(rounds, "launch", launch)
    results = matrix.run_matrix(["gin/mlp.gin"], ["Experiment.batch_size = 8"], 10)
    assert [r["setting"] for r in results] == [name for name, _, _ in matrix.SETTINGS]
    assert all(bindings[0] == "Experiment.batch_size = 8" for _, bindings in launched)
    assert [variant for variant, _ in launched].count("fit") == 1
    ratios = {r["setting"]: r["ratio_to_baseline"] for r in results}
    assert ratios[matrix.BASELINE] == 1.0
    assert ratios["loop, 100 steps a call, float32, XLA"] == 2.0
    assert "loop, 1 step a call, float32 | 100 | 1.00" in matrix.table(results)


def test_the_plain_script_trains_the_configs_model_on_the_same_data(tmp_path):
    # What framework.bench.outside compares the main command with: a plain Keras script,
    # given the config's model as Keras JSON and its data as NumPy arrays.
    from framework.bench import outside  # pylint: disable=import-outside-toplevel
    config.parse(["gin/mlp.gin"], [*(b.split("=", 1)[1] for b in TINY),
                                   "schedules.cosine_decay.initial_learning_rate = 0.01",
                                   # TINY's 8 units: an unseeded start sometimes leaves
                                   # few alive (61% once); 64 reached 100% in 12 of 12
                                   "models.mlp.hidden_units = (64,)"])
    settings = outside.prepare(str(tmp_path))
    assert settings == {"batch_size": 128, "learning_rate": 0.01, "alpha": 0.05,
                        "train_steps": 20}
    model = keras.models.model_from_json((tmp_path / "model.json").read_text())
    assert model.dtype_policy.name == "float32" and model.count_params() > 0
    result = subprocess.run(outside.plain_command(str(tmp_path), 150, evaluate=True),
                            env=cli_environment(), capture_output=True, text=True,
                            timeout=300, check=True)
    accuracy = float(result.stdout.split()[-1])
    assert accuracy > 0.8  # the synthetic classes are easy: the script really trains


def test_the_plain_script_is_refused_for_what_it_cannot_write(tmp_path):
    from framework.bench import outside  # pylint: disable=import-outside-toplevel
    config.parse(["gin/linear_regression.gin"], [])
    with pytest.raises(UserError, match="one-output classification with Adam"):
        outside.prepare(str(tmp_path))


def test_the_sources_benchmark_times_both_sources_over_the_same_examples(tmp_path):
    bindings = [binding for binding in TINY if "input_shape" not in binding]
    convert = subprocess.run(
        [sys.executable, "-m", "framework.tfrecord", "--gin_file=gin/mlp.gin", *bindings,
         f"--output={tmp_path / 'records'}", "--shards=2"], cwd=REPO, env=cli_environment(),
        capture_output=True, text=True, timeout=300)
    assert convert.returncode == 0, convert.stderr
    result = subprocess.run(
        [sys.executable, "-m", "framework.bench.sources", "--gin_file=gin/mlp.gin", *bindings,
         f"--records={tmp_path / 'records'}", "--rounds=1"], cwd=REPO,
        env=cli_environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"^ *(\w+), (first start|verified before) *: build +[\d.]+ s, one pass "
                      r"over (\d+) training examples", result.stdout, re.MULTILINE)
    assert rows == [(source, start, "256") for source in ("source", "tfrecord")
                    for start in ("first start", "verified before")], result.stdout
