"""`python -m framework.bench`: see framework/bench/__init__.py for the variants."""

import json
import sys

from absl import app, flags

from framework import config, registry
from framework.bench import rounds, variants
from framework.errors import UserError

VARIANTS = ("fit", "fit_plain", "fit_spe", "loop", "loop_scalars", "main_job",
            "fit_job", "feature_cache")

GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files of the experiment.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
STEPS = flags.DEFINE_integer("steps", 300, "Timed training steps per variant (the *_job "
                             "variants run the config's whole job instead).")
WARMUP = flags.DEFINE_integer("warmup_steps", None,
                              "Untimed steps first (tracing); default: steps_per_loop.")
REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds; variants alternate within a round.")
VARIANT_LIST = flags.DEFINE_list("variants", ["fit", "fit_spe", "loop"],
                                 f"Which of {', '.join(VARIANTS)}.")
OUTPUT = flags.DEFINE_string("output", "bench.json", "Where the JSON results go.")
WORKER = flags.DEFINE_enum("worker", None, VARIANTS, "Internal: run one variant and report.")
LAUNCHED_AT = flags.DEFINE_float("launched_at", None, "Internal: the parent's launch time.")


def main(argv):
    del argv
    unknown = set(VARIANT_LIST.value) - set(VARIANTS)
    if unknown or not GIN_FILES.value:
        print(f"error: pass --gin_file and --variants from {', '.join(VARIANTS)}",
              file=sys.stderr)
        sys.exit(2)
    try:
        if WORKER.value:
            registry.discover()
            config.parse(GIN_FILES.value, BINDINGS.value)
            variants.worker(WORKER.value, STEPS.value, WARMUP.value, LAUNCHED_AT.value,
                            report=lambda figures: print(
                                rounds.RESULT_PREFIX + json.dumps(figures), flush=True))
            return
        report = rounds.run_rounds(VARIANT_LIST.value, GIN_FILES.value, BINDINGS.value,
                                   STEPS.value, WARMUP.value, REPEATS.value)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    with open(OUTPUT.value, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(rounds.table(report))
    peak = report["config"]["fp32_matmul_gflops"]
    print(f"(medians of {REPEATS.value} rounds; FP32 peak: a 2048x2048 float32 matmul, "
          f"{peak:.0f} GFLOP/s here; JSON in {OUTPUT.value})")


if __name__ == "__main__":
    app.run(main)
