"""The benchmark command runs on a tiny configuration and writes its JSON (no timings
are asserted: those belong in BUILD_NOTES.md)."""

import json
import subprocess
import sys

from helpers import REPO, cli_environment

TINY = ["--gin_bindings=Experiment.dataset = @datasets.synthetic",
        "--gin_bindings=datasets.synthetic.train_size = 256",
        "--gin_bindings=datasets.synthetic.input_shape = (8, 8, 1)",
        "--gin_bindings=models.mlp.hidden_units = (8,)",
        "--gin_bindings=Experiment.model = @models.mlp",
        "--gin_bindings=Experiment.steps_per_loop = 2"]


def test_bench_compares_fit_and_the_loop_and_writes_json(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "framework.bench", "--gin_file=gin/mlp.gin", *TINY,
         "--steps=4", "--warmup_steps=2", "--repeats=1", "--variants=fit,loop",
         f"--output={output}"],
        cwd=REPO, env=cli_environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text())
    assert set(report["medians"]) == {"fit", "loop"}
    for variant, values in report["medians"].items():
        assert values["examples_per_second"] > 0 and values["peak_rss_mb"] > 0, variant
        assert values["seconds_last_output_to_exit"] >= 0, variant
        assert values["timed_steps"] == 4, variant
    assert report["medians"]["fit"]["ratio_to_fit"] == 1.0
    assert 0.0 <= report["medians"]["loop"]["input_wait_share"] <= 1.0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("variant | ex/s | × fit") and len(lines) == 4
