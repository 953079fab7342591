"""Experiment.init_checkpoint with a Keras file (.weights.h5 or .keras): loaded by layer name
into another architecture, with a report of what was loaded and skipped; a file that cannot
start the model is one UserError before anything is written."""

import zipfile

import gin
import h5py
import keras
import numpy as np
import pytest

from configs import MIRRORED, SYNTHETIC_MLP
from framework import weights_by_name
from framework.errors import UserError
from framework.experiment import Experiment
from helpers import build_run, run_cli

SMALL = SYNTHETIC_MLP + "datasets.synthetic.input_shape = (6,)\n"
WIDER = SMALL + "models.mlp.hidden_units = (32, 16)\n"


def saved_source(tmp_path, suffix: str) -> tuple[str, dict]:
    """A Keras file of the framework's mlp with hidden_units (32,) and weights unlike any
    fresh initialisation, saved by Keras itself; (its path, {layer: its weights})."""
    _, run = build_run(SMALL, tmp_path / "source_run")
    rng = np.random.default_rng(7)
    for variable in run.model.weights:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    path = str(tmp_path / f"source{suffix}")
    if suffix == ".keras":
        run.model.save(path)
    else:
        run.model.save_weights(path)
    gin.clear_config()
    return path, {layer.name: [w.numpy() for w in layer.weights]
                  for layer in run.model.layers if layer.weights}


def weights(model, name: str) -> list[np.ndarray]:
    return [w.numpy().astype(np.float32) for w in model.get_layer(name).weights]


@pytest.mark.parametrize("suffix, extra", [
    (".weights.h5", ""),
    # Mixed precision keeps float32 variables; mirrored ones take the values on each replica.
    (".keras", "Experiment.precision_policy = 'mixed_bfloat16'"),
    (".weights.h5", MIRRORED),
])
def test_a_wider_model_loads_the_matching_layers_and_reports_the_rest(
        tmp_path, capsys, suffix, extra):
    path, saved = saved_source(tmp_path, suffix)
    capsys.readouterr()
    _, fresh = build_run(WIDER + extra, tmp_path / "fresh")
    gin.clear_config()
    _, run = build_run(WIDER + extra + f"\nExperiment.init_checkpoint = '{path}'",
                       tmp_path / "wider")
    assert run.restored_from is None
    for variable, value in zip(run.model.get_layer("hidden_1").weights, saved["hidden_1"]):
        copies = getattr(variable.value, "values", None) or [variable.value]  # each replica's
        assert len(copies) == run.strategy.num_replicas_in_sync
        for copy in copies:
            np.testing.assert_array_equal(np.asarray(copy, np.float32), value)
    # hidden_2 is not in the file and outputs is narrower here: both keep the fresh
    # initialisation (the same seed gives both runs the same).
    for name in ("hidden_2", "outputs"):
        for kept, initial in zip(weights(run.model, name), weights(fresh.model, name)):
            np.testing.assert_array_equal(kept, initial)
    assert weights(run.model, "outputs")[0].shape != saved["outputs"][0].shape
    console = capsys.readouterr().out
    assert (f"init from {path}: 1 layer loaded, 2 skipped (hidden_2: not in the file; "
            "outputs: shape (32, 10) in the file, (16, 10) here)") in console


def test_layers_match_at_any_depth_and_the_report_lists_them(tmp_path, capsys):
    # The file's layers are one level down, the model's in an extractor and a head (the
    # frozen-feature shape), with a layer of its own; the file has one the model has not.
    inputs = keras.Input((4,))
    inner = keras.Model(inputs, keras.layers.Dense(3, name="logits")(
        keras.layers.Dense(5, name="features_dense")(inputs)), name="inner")
    inner.get_layer("features_dense").set_weights([np.ones((4, 5)), np.full(5, 2.0)])
    source = keras.Model(inputs, [inner(inputs),
                                  keras.layers.Dense(2, name="old_head")(inputs)])
    path = str(tmp_path / "flat.weights.h5")
    source.save_weights(path)

    images = keras.Input((4,))
    extractor = keras.Model(images, keras.layers.Dense(5, name="features_dense")(images),
                            name="features")
    features = keras.Input((5,))
    head = keras.Model(features, keras.layers.Dense(7, name="logits")(
        keras.layers.Dense(6, name="new_hidden")(features)), name="head")
    model = keras.Model(images, head(extractor(images)))
    report = weights_by_name.load_by_name(model, path)

    assert report.loaded == ["features_dense"]
    assert report.skipped == {"new_hidden": "not in the file",
                              "logits": "shape (5, 3) in the file, (6, 7) here"}
    assert report.unused == ["old_head"]
    np.testing.assert_array_equal(extractor.get_layer("features_dense").get_weights()[1],
                                  np.full(5, 2.0))
    assert "1 layer of the file matched no layer (old_head)" in capsys.readouterr().out


def test_a_keras_file_without_layer_names_is_read_through_its_config(tmp_path, capsys):
    # Keras 3 releases before the `name` attribute wrote .keras files without it.
    path, saved = saved_source(tmp_path, ".keras")
    nameless = tmp_path / "nameless.keras"
    inner = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(path) as archive:
        inner.write_bytes(archive.read("model.weights.h5"))
        members = {name: archive.read(name) for name in archive.namelist()}
    with h5py.File(inner, "a") as store:
        store.visititems(lambda _, item: item.attrs.pop("name", None) and None)
    with zipfile.ZipFile(nameless, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, inner.read_bytes() if name == "model.weights.h5" else data)
    capsys.readouterr()
    _, run = build_run(WIDER + f"Experiment.init_checkpoint = '{nameless}'",
                       tmp_path / "wider")
    for loaded, value in zip(weights(run.model, "hidden_1"), saved["hidden_1"]):
        np.testing.assert_array_equal(loaded, value)
    assert "1 layer loaded, 2 skipped" in capsys.readouterr().out


def other_model_file(tmp_path) -> str:
    path = str(tmp_path / "other.weights.h5")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="unrelated")]) \
        .save_weights(path)
    return path


def same_name_other_shape_file(tmp_path) -> str:
    path = str(tmp_path / "narrow.weights.h5")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="outputs")]) \
        .save_weights(path)
    return path


def nameless_weights_file(tmp_path) -> str:
    path = str(tmp_path / "old.weights.h5")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="hidden_1")]) \
        .save_weights(path)
    with h5py.File(path, "a") as store:
        store.visititems(lambda _, item: item.attrs.pop("name", None) and None)
    return path


def written(tmp_path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


def hdf5_without_layers(tmp_path) -> str:
    with h5py.File(tmp_path / "data.weights.h5", "w") as store:
        store["x"] = np.zeros(3)
    return str(tmp_path / "data.weights.h5")


def empty_folder(tmp_path) -> str:
    (tmp_path / "empty").mkdir()
    return str(tmp_path / "empty")


@pytest.mark.parametrize("make_file, expected", [
    (lambda tmp: str(tmp / "missing.weights.h5"), "does not exist. Fix: give the path of a "
     "Keras 3 weights file"),
    (lambda tmp: written(tmp, "junk.weights.h5", b"not hdf5"), "is damaged or unreadable "
     "(OSError"),
    (lambda tmp: written(tmp, "junk.keras", b"not a zip"), "is damaged or unreadable "
     "(BadZipFile"),
    (hdf5_without_layers, "holds no layer weights. Fix: give a Keras 3 weights file"),
    (nameless_weights_file, "holds no layer names (an older Keras 3 wrote it)"),
    (other_model_file, "no layer of this model matches a layer of"),
    (same_name_other_shape_file, "alike in name only: outputs: shape (3, 2) in the file, "
     "(32, 10) here). Fix:"),
    (lambda tmp: written(tmp, "legacy.h5", b""), "looks like a legacy Keras HDF5 file"),
    (empty_folder, "holds no TensorFlow checkpoint"),
    (lambda tmp: str(tmp / "runs" / "ckpt-5"), "is neither a TensorFlow checkpoint"),
])
def test_a_file_that_cannot_start_the_model_is_one_error_before_anything_is_written(
        tmp_path, make_file, expected):
    path = make_file(tmp_path)
    model_dir = tmp_path / "run"
    gin.parse_config(SMALL + f"Experiment.train_steps = 2\n"
                             f"Experiment.init_checkpoint = '{path}'")
    with pytest.raises(UserError) as raised:
        Experiment().run(str(model_dir))
    message = str(raised.value)
    assert expected in message and path in message
    assert "Fix:" in message
    assert not model_dir.exists(), "a failed start wrote to model_dir"


def test_no_variable_is_assigned_when_nothing_matches(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="mine")])
    before = [w.numpy() for w in model.weights]
    with pytest.raises(UserError, match="the file's: unrelated; this model's: mine"):
        weights_by_name.load_by_name(model, other_model_file(tmp_path))
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_cli_bad_weights_file_is_one_error_line(tmp_path):
    bad = written(tmp_path, "bad.keras", b"PK not really")
    model_dir = tmp_path / "run"
    result = run_cli("--gin_file=gin/mlp.gin",
                     "--gin_bindings=Experiment.dataset = @datasets.synthetic",
                     "--gin_bindings=Experiment.train_steps = 2",
                     f"--gin_bindings=Experiment.init_checkpoint = '{bad}'",
                     f"--model_dir={model_dir}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"{bad} is damaged or unreadable" in errors[0]
    assert not model_dir.exists(), "a failed start wrote to model_dir"


def test_only_keras_suffixes_are_read_by_name():
    assert weights_by_name.is_keras_file("a/b.weights.h5")
    assert weights_by_name.is_keras_file("b.keras")
    assert not weights_by_name.is_keras_file("runs/x/checkpoints/ckpt-5")
