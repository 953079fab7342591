"""`python -m framework.bench.matrix`: the speed settings against each other, in one call.

    python -m framework.bench.matrix --gin_file=gin/cnn.gin [--steps=300] \\
        [--output=matrix.json]

Prepared for a machine with an accelerator, where a session has only minutes of it: one
command times the framework's loop on the config's model and data in each setting that
matters there (steps_per_loop 1 vs 100, float32 vs mixed_bfloat16, with and without XLA),
plus keras.Model.fit as the reference and 'auto' (which reports what it chose and why).
Each setting runs once, in a fresh process (framework.bench.rounds.launch), and the
table gives examples/s and the ratio to the float32 loop at steps_per_loop 100. On
gin/cnn.gin at 300 steps the whole matrix takes about 3 minutes on a 2-core CPU.
"""

import json
import sys

from absl import app, flags

from framework.bench import rounds
from framework.errors import UserError

BASELINE = "loop, 100 steps a call, float32"
# (name, benchmark variant, gin bindings): the settings compared.
SETTINGS = [
    ("fit, float32", "fit", ["Experiment.precision_policy = 'float32'"]),
    ("loop, 1 step a call, float32", "loop",
     ["Experiment.steps_per_loop = 1", "Experiment.precision_policy = 'float32'"]),
    (BASELINE, "loop", ["Experiment.steps_per_loop = 100",
                        "Experiment.precision_policy = 'float32'"]),
    ("loop, 100 steps a call, mixed_bfloat16", "loop",
     ["Experiment.steps_per_loop = 100", "Experiment.precision_policy = 'mixed_bfloat16'"]),
    ("loop, 100 steps a call, float32, XLA", "loop",
     ["Experiment.steps_per_loop = 100", "Experiment.precision_policy = 'float32'",
      "Experiment.jit_compile = True"]),
    ("loop, 100 steps a call, mixed_bfloat16, XLA", "loop",
     ["Experiment.steps_per_loop = 100", "Experiment.precision_policy = 'mixed_bfloat16'",
      "Experiment.jit_compile = True"]),
    ("loop, 100 steps a call, auto", "loop",
     ["Experiment.steps_per_loop = 100", "Experiment.precision_policy = 'auto'"]),
]


def run_matrix(gin_files: list[str], bindings: list[str], steps: int) -> list[dict]:
    """One result per setting (framework.bench's figures, plus `setting` and
    `ratio_to_baseline`)."""
    results = []
    for name, variant, setting in SETTINGS:
        print(f"{name} ...", file=sys.stderr, flush=True)
        # The warm-up covers one host call of 100 steps, tracing included.
        result = rounds.launch(variant, gin_files, [*bindings, *setting], steps, warmup=100)
        results.append({"setting": name, **result})
    baseline = next(r for r in results if r["setting"] == BASELINE)["examples_per_second"]
    for result in results:
        result["ratio_to_baseline"] = result["examples_per_second"] / baseline
    return results


def table(results: list[dict]) -> str:
    lines = ["setting | ex/s | × float32 loop | ms/step | precision"]
    lines += [f"{r['setting']} | {r['examples_per_second']:.0f} | {r['ratio_to_baseline']:.2f} | "
              f"{r['step_ms']:.2f} | {r['precision']} ({r['precision_reason']})"
              for r in results]
    return "\n".join(lines)


def main(argv):
    del argv
    if not GIN_FILES.value:
        print("error: pass --gin_file", file=sys.stderr)
        sys.exit(2)
    try:
        results = run_matrix(GIN_FILES.value, BINDINGS.value, STEPS.value)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    with open(OUTPUT.value, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print(table(results))


if __name__ == "__main__":  # flags only for the command: tests import the functions
    GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files of the experiment.")
    BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
    STEPS = flags.DEFINE_integer("steps", 300, "Timed training steps per setting.")
    OUTPUT = flags.DEFINE_string("output", "matrix.json", "Where the JSON results go.")
    app.run(main)
