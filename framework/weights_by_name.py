"""Model weights from a Keras file, matched to another model's layers by name: transfer
between architectures (Keras 2's `load_weights(by_name=True)`, which Keras 3 keeps only
for legacy .h5 files).

Files: `.weights.h5` (`model.save_weights`) and `.keras` (`model.save`). Both hold one
HDF5 weights store, laid out by Keras 3's saving_lib (a .keras zip holds it as
`model.weights.h5`): every object with variables of its own has a group `<path>/vars`
whose datasets "0", "1", ... are those variables in the order the object's
`save_own_variables` gives them, and whose attribute `name` is the layer's name. The
path (`layers/dense_1`) is built from class names and positions, not layer names, so it
is not used for matching. Keras 3 releases before the `name` attribute wrote files
without it: such a .keras file is read with `keras.saving.load_model` instead (its config
names every layer); such a .weights.h5 file cannot be matched by name, which is an error.

Matching: every layer of the model, at any depth, that has variables of its own (a Dense,
a BatchNormalization; not the models that only contain layers) is looked up by its name
among the file's layers. It is loaded when exactly one file layer has that name, with the
same number of variables and equal shapes; otherwise it keeps its weights and the report
says why. A mixed-precision model keeps float32 variables, so its shapes and values match
a float32 file's.
"""

import dataclasses
import zipfile

import h5py
import keras
import ml_dtypes
import numpy as np
import tensorflow as tf
from absl import logging

from framework.console import CONSOLE
from framework.errors import UserError, reading

SUFFIXES = (".weights.h5", ".keras")
_WEIGHTS_IN_ARCHIVE = "model.weights.h5"  # where model.save puts the store in a .keras zip
_NOT_LAYERS = ("optimizer",)  # top-level file groups that hold no model layer
_SAVE_ONE = ("a Keras 3 weights file, saved with model.save_weights('name.weights.h5') "
             "or model.save('name.keras').")


def is_keras_file(path: str) -> bool:
    """Whether `path` names a file this module reads (by its extension)."""
    return str(path).endswith(SUFFIXES)


@dataclasses.dataclass
class LoadReport:
    """What `load_by_name` did: the model's layers (with variables) that were loaded, those
    skipped with the reason, and the file's layers that no layer of the model is named as."""

    path: str
    loaded: list[str]
    skipped: dict[str, str]  # model layer name -> why it kept its weights
    unused: list[str]

    def summary(self, shown: int = 5) -> str:
        """One line: 'init from F: 1 layer loaded, 2 skipped (hidden_2: not in the file;
        outputs: shape ...)'; at most `shown` names per list, then a count."""
        text = f"init from {self.path}: {_count(len(self.loaded), 'layer')} loaded"
        if self.skipped:
            reasons = [f"{name}: {why}" for name, why in self.skipped.items()]
            text += f", {len(self.skipped)} skipped ({_listed(reasons, shown, '; ')})"
        if self.unused:
            text += (f"; {_count(len(self.unused), 'layer')} of the file matched no layer "
                     f"({_listed(self.unused, shown)})")
        return text


def load_by_name(model: keras.Model, path: str) -> LoadReport:
    """Loads the layers of the Keras file `path` into the layers of `model` that have the
    same name and variable shapes; logs and prints the report, and returns it.

    Raises UserError, before any variable is assigned, when the file does not exist, is not
    a Keras weights file, holds no layer names, or matches no layer of the model.
    """
    path = str(path)
    source, targets = _read(path), _layers_with_variables(model)
    loads, skipped = _match(source, targets)
    if not loads:
        raise _nothing_matches(path, source, targets, skipped)
    for _, layer, values in loads:
        layer.load_own_variables(values)
    report = LoadReport(path, [name for name, _, _ in loads], skipped,
                        [name for name in source if name not in targets])
    logging.info("Model weights initialised by layer name from %s. Loaded: %s. Skipped: %s. "
                 "In the file only: %s.", path, ", ".join(report.loaded),
                 "; ".join(f"{n} ({why})" for n, why in skipped.items()) or "none",
                 ", ".join(report.unused) or "none")
    CONSOLE.line(report.summary())
    return report


def _match(source: dict, targets: dict) -> tuple[list[tuple], dict[str, str]]:
    """([(name, model layer, the file's variables)] to load, {name: why not} for the rest
    of the model's layers with variables)."""
    loads, skipped = [], {}
    for name, layers in targets.items():
        found = source.get(name, [])
        why = (f"{len(layers)} layers of this model have this name" if len(layers) > 1
               else "not in the file" if not found
               else f"{len(found)} layers in the file have this name" if len(found) > 1
               else _mismatch(found[0], layers[0][1]))
        if why:
            skipped[name] = why
        else:
            loads.append((name, layers[0][0], found[0]))
    return loads, skipped


def _nothing_matches(path: str, source: dict, targets: dict, skipped: dict) -> UserError:
    other_shapes = [f"{name}: {why}" for name, why in skipped.items()
                    if why != "not in the file"]
    return UserError(
        f"Experiment.init_checkpoint: no layer of this model matches a layer of {path} by "
        f"name and shapes (the file's: {_listed(list(source), 8)}; this model's: "
        f"{_listed(list(targets), 8)}"
        + (f"; alike in name only: {_listed(other_shapes, 4, '; ')}" if other_shapes else "")
        + "). Fix: give the layers to carry over the same names in both models (Keras "
        "numbers unnamed layers in the order a process builds them), or use a file saved "
        "from a model that shares layers with this one.")


# -- the model's side -----------------------------------------------------------------------

def _layers_with_variables(model: keras.Model) -> dict[str, list[tuple]]:
    """{layer name: [(layer, its own variables as `save_own_variables` stores them)]} for
    every layer at any depth that has variables of its own."""
    found: dict[str, list[tuple]] = {}
    # Keras's own walk over every layer at any depth, sublayers of custom layers included
    # (model.layers is one level deep; there is no public equivalent).
    # pylint: disable-next=protected-access
    for layer in model._flatten_layers(include_self=True, recursive=True):
        own: dict = {}
        layer.save_own_variables(own)  # the public half of Keras's own saving: no copy
        if own:
            found.setdefault(layer.name, []).append((layer, own))
    return found


def _mismatch(values: dict, own: dict) -> str | None:
    """Why the file's variables of a layer cannot be loaded into `own` (None: they can)."""
    if sorted(values) != sorted(own):
        return f"{len(values)} variables in the file, {len(own)} here"
    for key in own:
        theirs, ours = tuple(np.shape(values[key])), tuple(np.shape(own[key]))
        if theirs != ours:
            return f"shape {theirs} in the file, {ours} here"
    return None


# -- the file's side ------------------------------------------------------------------------

def _read(path: str) -> dict[str, list[dict]]:
    """{layer name: [its variables {'0': array, ...}, one per file layer of that name]}."""
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        what = "is a folder" if tf.io.gfile.isdir(path) else "does not exist"
        raise UserError(f"Experiment.init_checkpoint: {path} {what}. Fix: give the path of "
                        f"{_SAVE_ONE}")
    fix = f"Fix: give {_SAVE_ONE}"
    # h5py and zipfile read a file object: GFile for a remote path (gs://...), a plain
    # file otherwise (GFile's seek is stricter: a junk .keras would say "negative position"
    # instead of "not a zip file").
    with reading(f"Experiment.init_checkpoint: {path}", fix), \
            (tf.io.gfile.GFile(path, "rb") if "://" in path else open(path, "rb")) as file:
        layers = _read_keras(path, file) if path.endswith(".keras") else _read_h5(path, file)
    if not layers:
        raise UserError(f"Experiment.init_checkpoint: {path} holds no layer weights. {fix}")
    return layers


def _read_keras(path: str, file) -> dict[str, list[dict]]:
    with zipfile.ZipFile(file) as archive:
        if _WEIGHTS_IN_ARCHIVE not in archive.namelist():  # another weights format
            return _layers_of_saved_model(path)
        with archive.open(_WEIGHTS_IN_ARCHIVE) as stream, h5py.File(stream, "r") as store:
            layers, nameless = _layers_in_store(store)
    # Written by an older Keras 3, without layer names: its config names the layers.
    return _layers_of_saved_model(path) if nameless else layers


def _read_h5(path: str, file) -> dict[str, list[dict]]:
    with h5py.File(file, "r") as store:
        layers, nameless = _layers_in_store(store)
    if nameless and not layers:
        raise UserError(
            f"Experiment.init_checkpoint: {path} holds no layer names (an older Keras 3 "
            "wrote it), so its layers cannot be matched by name. Fix: save the source model "
            "with model.save('name.keras') (its config names the layers), or with a newer "
            "Keras.")
    return layers


def _layers_in_store(store: h5py.File) -> tuple[dict[str, list[dict]], int]:
    """(the layers of a Keras weights store by name, how many had no name)."""
    layers: dict[str, list[dict]] = {}
    nameless = []

    def visit(group_path: str, group) -> None:
        if (not isinstance(group, h5py.Group) or group_path.rsplit("/", 1)[-1] != "vars"
                or group_path.split("/", 1)[0] in _NOT_LAYERS):
            return
        values = {key: _array(item) for key, item in group.items()
                  if isinstance(item, h5py.Dataset)}
        if not values:
            return
        name = group.attrs.get("name")
        if name is None:
            nameless.append(group_path)
        else:
            layers.setdefault(name.decode() if isinstance(name, bytes) else str(name),
                              []).append(values)

    store.visititems(visit)
    return layers, len(nameless)


def _array(dataset: h5py.Dataset) -> np.ndarray:
    # Keras stores bfloat16 values as raw 16-bit data marked with a dtype attribute.
    if dataset.attrs.get("dtype") == "bfloat16":
        return np.array(dataset, dtype=ml_dtypes.bfloat16)
    return dataset[()]


def _layers_of_saved_model(path: str) -> dict[str, list[dict]]:
    """The layers of the model a .keras file holds, rebuilt from its config (safe mode: no
    code from the file runs)."""
    saved = keras.saving.load_model(path, compile=False)
    return {name: [{key: np.asarray(value) for key, value in own.items()}
                   for _, own in layers]
            for name, layers in _layers_with_variables(saved).items()}


def _listed(names: list[str], shown: int, separator: str = ", ") -> str:
    if len(names) <= shown:
        return separator.join(names) or "none"
    return separator.join(names[:shown]) + f"{separator}and {len(names) - shown} more"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
