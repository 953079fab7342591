"""The benchmark's parent process: each variant in a fresh process, rounds of them
interleaved, ratios within each round, medians over rounds, and the table."""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import tensorflow as tf
from absl import logging

from framework import hardware
from framework.bench import measure
from framework.errors import UserError

RESULT_PREFIX = "BENCH_RESULT "


def launch(variant: str, gin_files: list[str], bindings: list[str], steps: int,
           warmup: int | None) -> dict:
    """Runs `variant` in a fresh process; returns its figures and its exit timing."""
    launched = time.time()
    gin_flags = [*[f"--gin_file={f}" for f in gin_files],
                 *[f"--gin_bindings={b}" for b in bindings]]
    # main_job's model_dir; the workers make their own.
    scratch = tempfile.TemporaryDirectory(prefix="bench-main-job-")
    if variant == "main_job":
        command = [sys.executable, "-m", "framework.main", *gin_flags,
                   f"--model_dir={scratch.name}"]
    else:
        command = [sys.executable, "-m", "framework.bench", f"--worker={variant}",
                   f"--launched_at={launched}", f"--steps={steps}", *gin_flags,
                   *([f"--warmup_steps={warmup}"] if warmup else [])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if variant == "fit_plain":  # what TensorFlow and Keras choose without the framework
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if hardware.tensorflow_enables_onednn() else "0"
        command.append("--gin_bindings=Experiment.precision_policy = 'float32'")
    with scratch:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
        result, final = None, {}
        for line in process.stdout:
            last_line_at = time.time()
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX):])
            elif match := re.match(r"final eval (\S+): (\S+) \(step (\d+)\)", line):
                final[f"final_eval_{match[1]}"] = float(match[2])
                final["trained_steps"] = int(match[3])
        stderr = process.stderr.read()
        process.wait()
    if variant == "main_job" and final:
        result = {"variant": variant, **final}
    if result is None or process.returncode != 0:
        raise UserError(f"Benchmark variant {variant} failed (exit {process.returncode}):\n"
                        + "\n".join(stderr.strip().splitlines()[-15:]))
    exited = time.time()
    result["seconds_last_output_to_exit"] = exited - last_line_at
    if variant.endswith("_job"):
        result["job_seconds"] = exited - launched
    return result


def run_rounds(variants: list[str], gin_files: list[str], bindings: list[str], steps: int,
               warmup: int | None, repeats: int) -> dict:
    """`repeats` rounds of every variant in turn; the report (config, medians, rounds)."""
    peak = measure.fp32_matmul_gflops()
    rounds = []
    for number in range(repeats):
        round_results = {variant: launch(variant, gin_files, bindings, steps, warmup)
                         for variant in variants}
        baseline, fit_job = round_results.get("fit"), round_results.get("fit_job")
        plain = round_results.get("fit_plain")
        for result in round_results.values():
            if baseline and "examples_per_second" in result:
                result["ratio_to_fit"] = result["examples_per_second"] / baseline["examples_per_second"]
            if plain and "examples_per_second" in result:
                result["ratio_to_fit_plain"] = (result["examples_per_second"]
                                                / plain["examples_per_second"])
            if "gflops_per_second" in result:
                result["share_of_fp32_peak"] = result["gflops_per_second"] / peak
            if fit_job and "job_seconds" in result:
                result["time_to_fit_job"] = result["job_seconds"] / fit_job["job_seconds"]
        logging.info("round %d: %s", number + 1, {
            variant: round(result.get("examples_per_second", result.get("job_seconds", 0)), 1)
            for variant, result in round_results.items()})
        rounds.append(round_results)
    medians = {}
    for variant in variants:
        values = [r[variant] for r in rounds]
        medians[variant] = {key: statistics.median(v[key] for v in values)
                            for key in values[0] if isinstance(values[0][key], (int, float))
                            and not isinstance(values[0][key], bool)}
    return {"config": {"gin_files": gin_files, "gin_bindings": bindings,
                       "steps": steps, "repeats": repeats,
                       "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                       "fp32_matmul_gflops": peak},
            "medians": medians, "rounds": rounds,
            # What each variant computed in, and why ('auto' measured or cached), last round.
            "precision": {variant: f"{result['precision']} ({result['precision_reason']})"
                          for variant, result in rounds[-1].items() if "precision" in result}}


COLUMNS = [("examples_per_second", "ex/s", "{:.0f}"), ("ratio_to_fit", "× fit", "{:.2f}"),
           ("ratio_to_fit_plain", "× fit_plain", "{:.2f}"),
           ("step_ms", "ms/step", "{:.1f}"), ("peak_rss_mb", "peak MB", "{:.0f}"),
           ("seconds_to_first_call_end", "start s", "{:.1f}"),
           ("seconds_last_output_to_exit", "exit s", "{:.2f}"),
           ("input_wait_share", "input wait", "{:.1%}"),
           ("gflops_per_second", "GFLOP/s", "{:.0f}"),
           ("share_of_fp32_peak", "of FP32 peak", "{:.0%}"),
           ("job_seconds", "job s", "{:.1f}"), ("time_to_fit_job", "× fit_job time", "{:.2f}"),
           ("trained_steps", "steps", "{:.0f}"),
           ("final_eval_accuracy", "eval accuracy", "{:.4f}"),
           ("epoch_seconds_recomputing", "epoch s recomputing", "{:.3f}"),
           ("epoch_seconds_cached", "epoch s cached", "{:.4f}"),
           ("cache_speedup", "cache ×", "{:.0f}")]


def table(report: dict) -> str:
    """The medians, one row per variant, with the columns some variant has."""
    columns = [column for column in COLUMNS
               if any(column[0] in values for values in report["medians"].values())]
    lines = [" | ".join(["variant", *[title for _, title, _ in columns]])]
    for variant, values in report["medians"].items():
        lines.append(" | ".join([variant, *[form.format(values[key]) if key in values else "-"
                                            for key, _, form in columns]]))
    lines += [f"precision of {variant}: {why}"
              for variant, why in report.get("precision", {}).items()]
    return "\n".join(lines)
