"""--mode=export and Experiment.export_at_end: a trained run as files that serve and load
without this framework (Orbit's export action, written with Keras 3's ExportArchive).

    <folder>/                default model_dir/export/<step>/: TensorFlow Serving's layout,
                             model_base_path export/ with one version per exported step
      saved_model.pb         the SavedModel: serving_default (float32 features) and, for
      variables/             image datasets, serving_image_bytes (framework.export_signatures)
      model.keras            the model as trained (logits, float32 outputs), which
                             keras.models.load_model opens without this framework
      model.weights.h5       its weights, for model.load_weights on the model plugin's model
      class_names.json       the classes' names: a list, or {head: list} (null: no classes)
      dataset_info.json      the DatasetInfo the model was trained for
      operative_config.gin   the run's config

The folder is written under a hidden sibling name and renamed when complete, so it is
complete or absent: an export killed midway leaves only `.<name>.partial-<pid>` beside it.
Local folders only (the rename).
"""

import dataclasses
import json
import os
import shutil
import time

import gin
from absl import logging

from framework import assembly
from framework.assembly import Run
from framework.console import CONSOLE
from framework.errors import UserError, described
from framework.export_signatures import (class_names, keras_file_model, model_outputs,
                                         outside_keras, write_saved_model)
from framework.run_dir import CONFIG_FILE, DATASET_INFO_FILE, RunDir

KERAS_FILE = "model.keras"
WEIGHTS_FILE = "model.weights.h5"
CLASS_NAMES_FILE = "class_names.json"
SAVED_MODEL_FILE = "saved_model.pb"  # what marks a folder as an export (--overwrite)


def export_mode(experiment, model_dir: str, checkpoint: str = "latest",
                directory: str | None = None, overwrite: bool = False) -> str:
    """--mode=export: builds the run in `model_dir` with its `checkpoint` ('latest' or
    'best') restored and exports it into `directory` (default model_dir/export/<step>).
    Returns the folder. Every mistake (no checkpoint, a folder that exists, data an export
    cannot describe) is a UserError raised before anything is written."""
    if directory:  # checked before the slow build when it is known
        check_destination(directory, model_dir, overwrite)
    run = assembly.build(experiment, model_dir, checkpoint)
    check_exportable(run, "--mode=export")
    if run.restored_from is None:
        raise UserError(f"--mode=export needs a trained run, and {model_dir} has no "
                        f"{checkpoint} checkpoint. Train first (--mode=train_and_eval), or "
                        "pass the --model_dir of a trained run.")
    return _export_and_say(run, directory or run.run_dir.export(run.step), overwrite,
                           f"{run.restored_from} (step {run.step})")


def export_after_training(run: Run, best_metric: str | None) -> str:
    """Experiment.export_at_end: exports the best checkpoint when `best_metric` is set and
    one was kept, else the run's final state (its latest checkpoint), into the default
    folder; a step already exported there is left as it is. Restoring the best checkpoint
    replaces the run's state in memory: call this when the run is over."""
    what = f"the final state (step {run.step})"
    if best_metric:
        restored = run.checkpoints.restore("best")
        if restored is None:
            CONSOLE.line(f"export_at_end: no best checkpoint by {best_metric} was kept (no "
                         "evaluation ran); exporting the final state instead.")
        else:
            what = f"the best checkpoint by {best_metric} (step {run.step})"
    directory = run.run_dir.export(run.step)
    if _is_export(directory):
        CONSOLE.line(f"export_at_end: step {run.step} is already exported to {directory}")
        return directory
    return _export_and_say(run, directory, False, what)


def check_exportable(run: Run, setting: str) -> None:
    """Raises UserError (naming `setting`, what asked for the export) unless every dataset
    of `run` gives features an export's signature can take: one float tensor of a fixed
    shape per example."""
    for dataset in run.datasets:
        features = dataset.train.element_spec[0]
        if not features.dtype.is_floating or not features.shape.is_fully_defined():
            raise UserError(
                f"{setting}: dataset '{dataset.info.name}' gives features of type "
                f"{features.dtype.name} and shape {features.shape}, which an export cannot "
                "describe: its signature takes float32 features of one fixed shape "
                "[batch, *input_shape]. Fix: make the dataset plugin give float features of "
                "a fixed shape (tf.cast, tf.ensure_shape); the model can take them as they "
                "are.")


def check_destination(directory: str, model_dir: str, overwrite: bool) -> None:
    """Raises UserError unless an export may be written to `directory`: absent or empty,
    or (with `overwrite`) an earlier export; never the run's folder or one holding it."""
    path, run = os.path.realpath(directory), os.path.realpath(model_dir)
    if path == run or run.startswith(path + os.sep):
        raise UserError(f"--export_dir {directory} holds the run {model_dir}: an export needs "
                        f"a folder of its own (by default {RunDir(model_dir).export('<step>')}).")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--export_dir {directory} is a file. Choose a folder.")
    if not (os.path.isdir(path) and os.listdir(path)):
        return
    if not overwrite:
        raise UserError(f"The export folder {directory} exists and is not empty. Pass "
                        "--overwrite to replace it, or choose another --export_dir.")
    if not _is_export(path):
        raise UserError(f"{directory} is not an earlier export (it has no {SAVED_MODEL_FILE}), "
                        "so --overwrite does not replace it. Remove it yourself, or choose "
                        "another --export_dir.")


def export(run: Run, directory: str, overwrite: bool = False) -> list[str]:
    """Writes the export of `run` (its model as restored or trained) into `directory`,
    laid out as the module's docstring says; returns the SavedModel's signatures. Checks
    as check_exportable and check_destination do first; on any failure nothing is left."""
    check_exportable(run, "export")
    check_destination(directory, run.run_dir.path, overwrite)
    outputs = model_outputs(run.model, run.info, run.run_dir.saved_dataset_info())
    decode = next((d.decode for d in run.datasets if d.decode is not None), None)
    parent, name = os.path.split(os.path.abspath(directory))
    created = _make_folders(parent)
    partial = os.path.join(parent, f".{name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)  # a leftover of this very process id
    try:
        signatures = write_saved_model(run.model, outputs, run.info.input_shape, decode,
                                       partial)
        _write_keras_files(run.model, run.info.input_shape, partial)
        _write(partial, CLASS_NAMES_FILE, json.dumps(class_names(outputs), indent=2))
        _write(partial, DATASET_INFO_FILE, json.dumps(
            run.run_dir.saved_dataset_info() or dataclasses.asdict(run.info), indent=2))
        _write(partial, CONFIG_FILE, run.run_dir.saved_config() or gin.operative_config_str())
        _move_into_place(partial, os.path.join(parent, name))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for folder in reversed(created):  # the folders made for it, when still empty
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise
    return signatures


def _export_and_say(run: Run, directory: str, overwrite: bool, what: str) -> str:
    """export(), then one console line: what went where, its signatures, how long."""
    start = time.perf_counter()
    signatures = export(run, directory, overwrite)
    CONSOLE.line(f"exported {what} to {directory} in {time.perf_counter() - start:.1f} s: "
                 f"SavedModel ({', '.join(signatures)}), {KERAS_FILE}, {WEIGHTS_FILE}")
    return directory


def _write_keras_files(model, input_shape: tuple, folder: str) -> None:
    try:
        keras_file_model(model, input_shape).save(os.path.join(folder, KERAS_FILE))
    except (TypeError, ValueError, NotImplementedError) as error:  # what Keras's get_config
        # and serialization raise for a layer they cannot describe
        raise UserError(
            f"The model cannot be saved as a .keras file ({described(error)}), so nothing was "
            "exported. Fix: build the model plugin from Keras's own layers, or make its "
            "custom layers serializable (keras.saving.register_keras_serializable and a "
            "get_config).") from error
    model.save_weights(os.path.join(folder, WEIGHTS_FILE))
    modules = outside_keras(model)
    if modules:
        logging.warning("%s names classes from %s: a process loading it must import %s "
                        "first.", KERAS_FILE, ", ".join(modules),
                        "it" if len(modules) == 1 else "them")


def _is_export(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, SAVED_MODEL_FILE))


def _make_folders(path: str) -> list[str]:
    """Makes `path` and its missing parents; returns the ones it made, outermost first."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for folder in reversed(missing):
        os.mkdir(folder)
    return list(reversed(missing))


def _move_into_place(partial: str, directory: str) -> None:
    """Renames the complete `partial` folder to `directory`, replacing an earlier export
    (check_destination allowed it) only once the new one is complete."""
    if os.path.isdir(directory) and os.listdir(directory):
        replaced = os.path.join(os.path.dirname(directory),
                                f".{os.path.basename(directory)}.replaced-{os.getpid()}")
        os.rename(directory, replaced)
        os.rename(partial, directory)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        os.replace(partial, directory)  # an empty folder is replaced as well


def _write(folder: str, name: str, text: str) -> None:
    with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
        handle.write(text)
