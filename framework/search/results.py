"""What a study leaves for its user: the table (printed, and as study_dir/trials.csv), the
best trial's config (best.gin), and TensorBoard's HParams view of every trial.

    study_dir/
      study.journal        the study itself (the default storage)
      search.gin           the config the study was made from (Search.* included)
      trials.csv           one row per trial: number, state, objective, steps, parameters
      best.gin             the best complete trial, ready to retrain
      trial_0007/          an ordinary run: checkpoints, summaries, operative_config.gin, trial.log
      events.out.tfevents  the search space as HParams domains, beside the trials' sessions
"""

import csv
import math
import os

import optuna
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from framework.search.space import Space, gin_text
from framework.search.study import counted_trials

TRIALS_FILE, BEST_FILE, CONFIG_FILE = "trials.csv", "best.gin", "search.gin"
PRUNED_TAG, STEPS_TAG = "search/pruned", "search/steps_trained"


def rows(study: optuna.Study, space: Space) -> list[dict]:
    """One row per trial that takes a place in the study, by number: number, state, value
    (the final objective; a pruned trial's last reported one), steps, seconds (from its
    process's launch to its end), the parameters as gin text, and a note (which
    interrupted trial it continues)."""
    table = []
    for trial in counted_trials(study.get_trials(deepcopy=False)):
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[trial.last_step]
        values = space.values(trial.params)
        retry_of = trial.user_attrs.get("retry_of")
        table.append({
            "number": trial.number, "state": trial.state.name, "value": value,
            "steps": trial.user_attrs.get("steps", trial.last_step),
            "seconds": _seconds(trial),
            **{name: gin_text(values[name]) if name in values else "" for name in
               space.distributions},
            "note": f"continues trial {retry_of}" if retry_of is not None else ""})
    return table


def write_csv(path: str, table: list[dict], space: Space) -> None:
    columns = ["number", "state", "value", "steps", "seconds", *space.distributions, "note"]
    with open(path + ".partial", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(table)
    os.replace(path + ".partial", path)


def format_table(table: list[dict], space: Space) -> str:
    """The rows as aligned text, parameters last (the widest)."""
    header = ["trial", "state", space.objective, "steps", "seconds", *space.distributions]
    lines = [[str(r["number"]), r["state"], _number(r["value"]), str(r["steps"] or ""),
              "" if r["seconds"] is None else f"{r['seconds']:.0f}",
              *(_short(r[name]) for name in space.distributions)] for r in table]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *lines])


def write_best(path: str, best: optuna.trial.FrozenTrial, space: Space, config_text: str,
               study_dir: str) -> None:
    """best.gin: the study's config (its Search settings left out) and then the best
    trial's parameters, so that on its own, or after the experiment's usual config, it
    retrains that trial."""
    experiment = "\n\n".join(block for block in config_text.strip().split("\n\n")
                             if not block.startswith("# Parameters for Search:"))
    text = (f"# The best trial of the study in {study_dir}: trial {best.number}, "
            f"{space.objective} {best.value:.6g} ({space.direction}).\n"
            f"# Retrain it: python -m framework.main --gin_file={path}\n\n"
            f"{experiment}\n\n# The trial's parameters:\n"
            + "\n".join(space.bindings(best.params)) + "\n")
    with open(path + ".partial", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".partial", path)


def progress_line(census, space: Space) -> str:
    """'7/20 trials done (3 pruned, 0 failed), 2 running · best accuracy 0.8912 (trial 4)'."""
    best = (f" · best {space.objective} {census.best.value:.4f} (trial {census.best.number})"
            if census.best else "")
    return (f"{census.finished}/{space.trials} trials done ({census.pruned} pruned, "
            f"{census.failed} failed), {census.running} running{best}")


def declare_hparams(study_dir: str, space: Space) -> None:
    """The study's HParams experiment at study_dir's root: each searched parameter with its
    domain (TensorBoard's parallel coordinates use them), the objective, the eval and
    training losses, and whether a trial was pruned and how far it trained."""
    domains = [hparams_api.HParam(name, _domain(distribution))
               for name, distribution in space.distributions.items()]
    metrics = [hparams_api.Metric(tag, group=group, dataset_type=kind) for tag, group, kind in [
        (space.objective, "eval", hparams_api.Metric.VALIDATION),
        *([("loss", "eval", hparams_api.Metric.VALIDATION)] if space.objective != "loss"
          else []),
        ("loss", "train", hparams_api.Metric.TRAINING),
        (PRUNED_TAG, None, None), (STEPS_TAG, None, None)]]
    writer = tf.summary.create_file_writer(study_dir)
    with writer.as_default():
        hparams_api.hparams_config(hparams=domains, metrics=metrics)
    writer.close()


def write_trial_outcome(model_dir: str, steps: int, pruned: bool) -> None:
    """Whether the trial was pruned, and its steps, beside its hparams (the run's root)."""
    writer = tf.summary.create_file_writer(model_dir)
    with writer.as_default(step=steps):
        tf.summary.scalar(PRUNED_TAG, float(pruned))
        tf.summary.scalar(STEPS_TAG, float(steps))
    writer.close()


def _domain(distribution):
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        choices = list(distribution.choices)
        if len({type(c) for c in choices}) > 1 or any(c is None for c in choices):
            choices = [str(c) for c in choices]
        return hparams_api.Discrete(choices)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return hparams_api.IntInterval(distribution.low, distribution.high)
    return hparams_api.RealInterval(float(distribution.low), float(distribution.high))


def _seconds(trial) -> float | None:
    launched = trial.user_attrs.get("launched_at")
    if launched is None or trial.datetime_complete is None:
        return None
    return round(trial.datetime_complete.timestamp() - launched, 1)


def _short(text: str) -> str:
    """A float's gin text to 4 significant digits ('0.001092'), other text as it is."""
    try:
        return f"{float(text):.4g}" if "." in text or "e" in text else text
    except ValueError:
        return text


def _number(value) -> str:
    if value is None:
        return ""
    return "nan" if math.isnan(value) else f"{value:.4f}"

