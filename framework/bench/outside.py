"""`python -m framework.bench.outside`: the main command against a plain Keras script,
timed from outside, as a user would compare them.

    python -m framework.bench.outside --gin_file=gin/cnn.gin [--steps=200,600] \\
        [--repeats=3] [--full] [--output=outside.json]

The plain script is what a Keras user writes for the same job: the config's model (rebuilt
from its Keras JSON, in float32), the same training examples (saved as NumPy arrays, as
keras.datasets hands them over), the classic `shuffle(whole epoch).batch(B).repeat()`,
Adam at the config's learning rate and `model.fit` with TensorFlow's defaults and no
callbacks. Each command runs in a fresh process at both step counts; the difference of
the wall times divides out starting, building and exiting, and leaves the examples/s of
the steps themselves (`--steps=A,B`). `--full` also runs both for the config's own
train_steps and reports each one's test accuracy next to its wall time. It takes
one-output classification configs trained with Adam (the Fashion-MNIST ones); others are
refused with one message.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import gin
import keras
import numpy as np
from absl import app, flags

from framework import assembly, config, hardware, registry
from framework.errors import UserError
from framework.experiment import Experiment

PLAIN_SCRIPT = '''
import json, sys
import numpy as np
import keras
import tensorflow as tf

folder, steps = sys.argv[1], int(sys.argv[2])
settings = json.load(open(f"{folder}/settings.json"))
x, y = np.load(f"{folder}/x_train.npy"), np.load(f"{folder}/y_train.npy")
model = keras.models.model_from_json(open(f"{folder}/model.json").read())
schedule = keras.optimizers.schedules.CosineDecay(
    settings["learning_rate"], steps, settings["alpha"]) if settings["alpha"] is not None \\
    else settings["learning_rate"]
model.compile(optimizer=keras.optimizers.Adam(schedule),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).batch(
    settings["batch_size"]).repeat()
model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
if len(sys.argv) > 3:
    x_test, y_test = np.load(f"{folder}/x_eval.npy"), np.load(f"{folder}/y_eval.npy")
    print("accuracy", model.evaluate(x_test, y_test, batch_size=256, verbose=0)[1])
'''


def prepare(folder: str) -> dict:
    """Writes the plain script, the config's model (float32 JSON), its data and settings
    into `folder`; returns the settings."""
    gin.bind_parameter("Experiment.precision_policy", "float32")  # Keras's default
    experiment = Experiment()
    with tempfile.TemporaryDirectory() as model_dir:
        run = assembly.build(experiment, model_dir)
    if run.info.task != "classification" or len(run.datasets) > 1 or not isinstance(
            run.optimizer, keras.optimizers.Adam):
        raise UserError("framework.bench.outside writes its plain script for one-output "
                        "classification with Adam, as the Fashion-MNIST configs are.")
    with open(os.path.join(folder, "model.json"), "w", encoding="utf-8") as f:
        f.write(run.model.to_json())
    for split in ("train", "eval"):
        features, labels = run.data.examples(split).batch(2**31).get_single_element()
        np.save(os.path.join(folder, f"x_{split}.npy"), features.numpy())
        np.save(os.path.join(folder, f"y_{split}.npy"), labels.numpy())
    schedule = run.optimizer.get_config()["learning_rate"]
    if isinstance(schedule, dict):  # a schedule: the cosine decay of the shipped configs
        learning_rate = schedule["config"]["initial_learning_rate"]
        alpha = schedule["config"].get("alpha")
    else:
        learning_rate, alpha = float(schedule), None
    settings = {"batch_size": experiment.batch_size, "learning_rate": learning_rate,
                "alpha": alpha, "train_steps": experiment.train_steps}
    with open(os.path.join(folder, "settings.json"), "w", encoding="utf-8") as f:
        json.dump(settings, f)
    with open(os.path.join(folder, "plain.py"), "w", encoding="utf-8") as f:
        f.write(PLAIN_SCRIPT)
    return settings


def timed(command: list[str]) -> tuple[float, str]:
    """(wall seconds from launch to exit, standard output) of a fresh process. The plain
    script gets TensorFlow's own oneDNN default for this CPU: importing the framework
    here turned oneDNN on for every CPU."""
    env = dict(os.environ)
    if command[1].endswith("plain.py"):
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if hardware.tensorflow_enables_onednn() else "0"
    start = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{process.stderr[-3000:]}")
    return seconds, process.stdout


def main_command(gin_flags: list[str], steps: int, model_dir: str) -> list[str]:
    return [sys.executable, "-m", "framework.main", *gin_flags,
            f"--gin_bindings=Experiment.train_steps = {steps}", f"--model_dir={model_dir}"]


def plain_command(folder: str, steps: int, evaluate: bool = False) -> list[str]:
    return [sys.executable, os.path.join(folder, "plain.py"), folder, str(steps),
            *(["evaluate"] if evaluate else [])]


def compare(gin_flags: list[str], folder: str, settings: dict, steps: tuple[int, int],
            repeats: int) -> dict:
    """Examples/s of the steps alone for each command, per round, and their ratio."""
    rounds = []
    for _ in range(repeats):
        seconds = {}
        for name in ("main", "plain"):
            for count in steps:
                with tempfile.TemporaryDirectory() as model_dir:
                    command = (main_command(gin_flags, count, model_dir) if name == "main"
                               else plain_command(folder, count))
                    seconds[(name, count)] = timed(command)[0]
        rate = {name: (steps[1] - steps[0]) * settings["batch_size"]
                / (seconds[(name, steps[1])] - seconds[(name, steps[0])])
                for name in ("main", "plain")}
        rounds.append({"main_examples_per_second": rate["main"],
                       "plain_examples_per_second": rate["plain"],
                       "ratio": rate["main"] / rate["plain"],
                       "seconds": {f"{name}_{count}": s for (name, count), s in seconds.items()}})
    return {"rounds": rounds, "median_ratio": statistics.median(r["ratio"] for r in rounds)}


def full_runs(gin_flags: list[str], folder: str, settings: dict) -> dict:
    """Both commands for the config's own train_steps: wall time and test accuracy."""
    with tempfile.TemporaryDirectory() as model_dir:
        main_seconds, output = timed(main_command(gin_flags, settings["train_steps"],
                                                  model_dir))
    main_accuracy = next(float(line.split()[3]) for line in output.splitlines()
                         if line.startswith("final eval accuracy:"))
    plain_seconds, output = timed(plain_command(folder, settings["train_steps"], True))
    plain_accuracy = float(output.split()[-1])
    return {"main_seconds": main_seconds, "main_accuracy": main_accuracy,
            "plain_seconds": plain_seconds, "plain_accuracy": plain_accuracy}


def main(argv):
    del argv
    registry.discover()
    config.parse(GIN_FILES.value, BINDINGS.value)
    gin_flags = [*[f"--gin_file={f}" for f in GIN_FILES.value],
                 *[f"--gin_bindings={b}" for b in BINDINGS.value]]
    steps = tuple(int(s) for s in STEPS.value)
    with tempfile.TemporaryDirectory(prefix="bench-outside-") as folder:
        try:
            settings = prepare(folder)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        report = {"settings": settings, "steps": steps,
                  **compare(gin_flags, folder, settings, steps, REPEATS.value)}
        if FULL.value:
            report["full"] = full_runs(gin_flags, folder, settings)
    with open(OUTPUT.value, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    for number, result in enumerate(report["rounds"], 1):
        print(f"round {number}: main {result['main_examples_per_second']:.0f} ex/s, plain "
              f"model.fit {result['plain_examples_per_second']:.0f} ex/s: "
              f"{result['ratio']:.2f}x")
    print(f"median: {report['median_ratio']:.2f}x (steps {steps[0]} vs {steps[1]}, "
          f"batch {settings['batch_size']})")
    if "full" in report:
        full = report["full"]
        print(f"full run: main {full['main_seconds']:.0f} s, test accuracy "
              f"{full['main_accuracy']:.4f}; plain {full['plain_seconds']:.0f} s, "
              f"{full['plain_accuracy']:.4f}")


if __name__ == "__main__":  # flags only for the command: tests import the functions
    GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files of the experiment.")
    BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
    STEPS = flags.DEFINE_list("steps", ["200", "600"], "The two step counts timed.")
    REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds; the commands alternate within one.")
    FULL = flags.DEFINE_bool("full", False, "Also run both for the config's train_steps and "
                             "compare test accuracy.")
    OUTPUT = flags.DEFINE_string("output", "outside.json", "Where the JSON results go.")
    app.run(main)
