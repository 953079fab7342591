"""Exports (--mode=export, Experiment.export_at_end) read by real clients: a Python process
that cannot import the framework loads the SavedModel and the .keras file, and
saved_model_cli describes the signatures.

Three tiny runs trained from the command line, once per module: the CNN on the real
Fashion-MNIST in mixed_bfloat16, the captcha config's multi-head model, and the frozen
InceptionV3 transfer config (random weights) on generated images. Each export must give
--mode=predict's probabilities (framework.predict on the same files) within 1e-5, through
the float signature, the image-bytes signature and the .keras file alike.
"""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from framework import assembly, export, registry, tasks
from framework.data import Dataset, DatasetInfo
from framework.errors import UserError
from framework.experiment import from_config
from framework.predict import predict_files
from helpers import run_cli, tree_snapshot
from test_image_folder import COLOURS, write_images

TOLERANCE = 1e-5
SAVED_MODEL_CLI = pathlib.Path(sys.executable).parent / "saved_model_cli"

# Run with `python -I` from a temporary folder: neither the working directory nor
# PYTHONPATH is on its path. The venv's editable install of the framework adds an import
# finder of its own, which is taken out first: the process then imports like one on a
# machine where the framework is not installed, and checks that it is so.
CLIENT = r'''
import importlib.util, json, sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks
                     if not getattr(h, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
sys.path_importer_cache.clear()
for name in ("framework", "plugins"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable"

import keras
import numpy as np
import tensorflow as tf

spec = json.load(open(sys.argv[1]))
features = tf.constant(np.load(spec["features"]))
images = tf.constant([open(path, "rb").read() for path in spec["images"]])
results = {}

def record(prefix, outputs):
    for name, value in outputs.items():
        value = np.asarray(value)
        results[f"{prefix}/{name}"] = {
            "dtype": str(value.dtype),
            "value": [v.decode() for v in value] if value.dtype == object else value.tolist()}

served = tf.saved_model.load(spec["export"])
record("float", served.signatures["serving_default"](features=features))
record("bytes", served.signatures["serving_image_bytes"](image_bytes=images))
model = keras.models.load_model(spec["export"] + "/model.keras")
logits = model.predict(features, verbose=0)
record("keras", logits if isinstance(logits, dict) else {"logits": logits})
assert not [m for m in sys.modules if m.split(".")[0] in ("framework", "plugins")]
json.dump(results, open("client.json", "w"))
'''


def run_client(folder: pathlib.Path, export_dir, features: np.ndarray, images) -> dict:
    np.save(folder / "features.npy", features)
    (folder / "spec.json").write_text(json.dumps({
        "export": str(export_dir), "features": str(folder / "features.npy"),
        "images": [str(path) for path in images]}))
    result = subprocess.run([sys.executable, "-I", "-c", CLIENT, str(folder / "spec.json")],
                            cwd=folder, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return {key: (np.array(entry["value"]), entry["dtype"])
            for key, entry in json.loads((folder / "client.json").read_text()).items()}


def train(folder: pathlib.Path, config: str, *arguments, env=None):
    """Trains the config (a gin file's text) from the command line in folder/run; returns
    (gin file, model_dir, the command's output)."""
    gin_file = folder / "experiment.gin"
    gin_file.write_text(textwrap.dedent(config) + textwrap.dedent("""
        Monitoring.images_at_eval = False
        Monitoring.histogram_every = None
    """))
    model_dir = folder / "run"
    result = run_cli(f"--gin_file={gin_file}", f"--model_dir={model_dir}", *arguments, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return gin_file, model_dir, result.stdout


def built(gin_file, model_dir, checkpoint="latest"):
    """The trained run, as --mode=predict builds it."""
    return assembly.build(from_config([str(gin_file)], []), str(model_dir), checkpoint)


def reference(run, inputs: pathlib.Path):
    """What --mode=predict gives for every file in `inputs`, as the signature names it
    ({'probabilities': ...} or {'<head>_probabilities': ...}; for one logit, the
    probability of class 1), and the features the dataset reads from those files."""
    files = sorted(str(path) for path in inputs.iterdir())
    tops = dict(predict_files(run, str(inputs), top_k=1000))
    info = run.run_dir.saved_dataset_info()

    def probabilities(names, top_of):
        return np.array([[dict(top_of(tops[f]))[n] for n in names] for f in files])
    if info["heads"]:
        expected = {f"{head['name']}_probabilities": probabilities(
            head["class_names"], lambda top, name=head["name"]: top[name])
            for head in info["heads"]}
    else:
        expected = {"probabilities": probabilities(info["class_names"], lambda top: top)}
        if info["task"] == "binary":
            expected["probabilities"] = expected["probabilities"][:, 1:]
    features = np.stack([run.datasets[0].load_file(f).numpy() for f in files])
    return files, features, expected


def check_client_agrees(client: dict, expected: dict, class_names):
    """Both signatures and the .keras file give the expected probabilities, and the
    signatures the class index and name that go with them."""
    for key, probabilities in expected.items():
        head = key[:-len("probabilities")]
        np.testing.assert_allclose(client[f"float/{key}"][0], probabilities, atol=TOLERANCE)
        np.testing.assert_allclose(client[f"bytes/{key}"][0], client[f"float/{key}"][0],
                                   atol=TOLERANCE)
        logits = client[f"keras/{head[:-1] or 'logits'}"][0].astype(np.float32)
        from_keras = tasks.probabilities(tf.constant(logits)).numpy()
        np.testing.assert_allclose(from_keras[:, -probabilities.shape[1]:], probabilities,
                                   atol=TOLERANCE)
        names = class_names[head[:-1]] if head else class_names
        index = (probabilities[:, 0] > 0.5).astype(int) if probabilities.shape[1] == 1 \
            else probabilities.argmax(axis=1)
        for signature in ("float", "bytes"):
            assert client[f"{signature}/{head}class_index"][1] == "int64"
            np.testing.assert_array_equal(client[f"{signature}/{head}class_index"][0], index)
            assert list(client[f"{signature}/{head}class_name"][0]) == [names[i] for i in index]
    assert all(dtype == "float32" for key, (_, dtype) in client.items()
               if "class_" not in key), {key: dtype for key, (_, dtype) in client.items()}


def saved_model_cli(export_dir) -> str:
    result = subprocess.run([str(SAVED_MODEL_CLI), "show", "--all", "--dir", str(export_dir)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def write_image(path: pathlib.Path, pixels: np.ndarray):
    """A uint8 [height, width, channels] array as a real PNG or JPEG file."""
    encode = tf.io.encode_png if path.suffix == ".png" else tf.io.encode_jpeg
    path.write_bytes(encode(tf.constant(pixels)).numpy())


# -- the CNN on Fashion-MNIST, trained in mixed_bfloat16 and exported when training ends ---

@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fashion")
    gin_file, model_dir, output = train(folder, """
        include 'gin/cnn.gin'
        Experiment.precision_policy = 'mixed_bfloat16'
        Experiment.train_steps = 20
        Experiment.steps_per_loop = 10
        Experiment.export_at_end = True
        models.cnn.filters = 8
        models.cnn.dense_units = 16
    """, "--mode=train")
    inputs = folder / "inputs"
    inputs.mkdir()
    run = built(gin_file, model_dir)
    images = [image for image, _ in run.datasets[0].eval.take(6).as_numpy_iterator()]
    for i, image in enumerate(images):
        pixels = np.round(image * 255).astype(np.uint8)
        write_image(inputs / f"{i}.{'png' if i < 4 else 'jpg'}", pixels)
    files, features, expected = reference(run, inputs)
    # A PNG of an example decodes to exactly that example: the dataset's decode is its
    # preprocessing.
    np.testing.assert_array_equal(features[:4], np.stack(images[:4]))
    return dict(folder=folder, gin_file=gin_file, model_dir=model_dir, output=output,
                run=run, files=files, features=features, expected=expected)


def test_export_at_end_writes_the_final_state_to_export_step(fashion):
    export_dir = fashion["model_dir"] / "export" / "20"
    assert f"exported the final state (step 20) to {export_dir}" in fashion["output"]
    assert {p.name for p in export_dir.iterdir()} >= {
        "saved_model.pb", "variables", "model.keras", "model.weights.h5", "class_names.json",
        "dataset_info.json", "operative_config.gin"}
    assert json.loads((export_dir / "class_names.json").read_text())[9] == "Ankle boot"
    assert (export_dir / "operative_config.gin").read_text() == \
        (fashion["model_dir"] / "operative_config.gin").read_text()
    assert [p.name for p in (fashion["model_dir"] / "export").iterdir()] == ["20"]
    # Every weight stored once (ExportArchive's track() would store each twice).
    stored = tf.train.list_variables(str(export_dir / "variables" / "variables"))
    assert sum(int(np.prod(shape)) for _, shape in stored if shape) == \
        fashion["run"].model.count_params()


def test_cnn_export_serves_like_predict_without_the_framework(fashion):
    client = run_client(fashion["folder"], fashion["model_dir"] / "export" / "20",
                        fashion["features"], fashion["files"])
    check_client_agrees(client, fashion["expected"], list(
        fashion["run"].run_dir.saved_dataset_info()["class_names"]))
    # Trained in mixed_bfloat16, served in float32: the .keras file's logits too.
    assert client["keras/logits"][1] == "float32"
    assert client["float/probabilities"][1] == "float32"


def test_saved_model_cli_lists_the_signatures_names_and_dtypes(fashion):
    text = saved_model_cli(fashion["model_dir"] / "export" / "20")
    default = text[text.index("signature_def['serving_default']"):]
    assert ("inputs['features'] tensor_info:\n        dtype: DT_FLOAT\n"
            "        shape: (-1, 28, 28, 1)") in default
    for output, dtype in (("probabilities", "DT_FLOAT"), ("class_index", "DT_INT64"),
                          ("class_name", "DT_STRING")):
        assert f"outputs['{output}'] tensor_info:\n        dtype: {dtype}" in default
    image_bytes = text[text.index("signature_def['serving_image_bytes']"):]
    assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" \
        in image_bytes


def test_export_refuses_an_existing_folder_and_overwrite_replaces_it(fashion):
    arguments = [f"--gin_file={fashion['gin_file']}", f"--model_dir={fashion['model_dir']}",
                 "--mode=export"]
    before = tree_snapshot(fashion["model_dir"])
    refused = run_cli(*arguments)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    export_dir = fashion["model_dir"] / "export" / "20"
    assert refused.stderr.strip() == (
        f"error: The export folder {export_dir} exists and is not empty. Pass --overwrite to "
        "replace it, or choose another --export_dir.")
    assert tree_snapshot(fashion["model_dir"]) == before
    replaced = run_cli(*arguments, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert f"to {export_dir} in " in replaced.stdout
    after = tree_snapshot(export_dir)
    assert after.keys() == {k[len("export/20/"):] for k in before if k.startswith("export/20/")}
    assert after["saved_model.pb"] != before["export/20/saved_model.pb"]  # written anew
    assert sorted(p.name for p in export_dir.parent.iterdir()) == ["20"]  # nothing left over


def test_export_into_another_folder_and_its_refusals(fashion, tmp_path):
    run = fashion["run"]
    not_an_export = tmp_path / "notes"
    not_an_export.mkdir()
    (not_an_export / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="is not an earlier export .* so --overwrite does not"):
        export.export(run, str(not_an_export), overwrite=True)
    with pytest.raises(UserError, match="holds the run"):
        export.export(run, str(fashion["model_dir"].parent), overwrite=True)
    assert (not_an_export / "keep.txt").read_text() == "mine"
    signatures = export.export(run, str(tmp_path / "new" / "export"))
    assert signatures == ["serving_default", "serving_image_bytes"]
    assert (tmp_path / "new" / "export" / "saved_model.pb").is_file()


def test_weights_file_loads_into_the_model_plugins_model(fashion, tmp_path):
    fresh = built(fashion["gin_file"], tmp_path / "untrained")
    assert fresh.restored_from is None
    fresh.model.load_weights(str(fashion["model_dir"] / "export" / "20" / "model.weights.h5"))
    for loaded, trained in zip(fresh.model.weights, fashion["run"].model.weights):
        np.testing.assert_array_equal(loaded.numpy(), trained.numpy(), err_msg=loaded.path)


def test_an_interrupted_export_leaves_nothing(fashion, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(export, "_write_keras_files", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.export(fashion["run"], str(tmp_path / "made" / "for" / "it"))
    assert list(tmp_path.iterdir()) == []  # neither the folder, its partial, nor parents


# -- the captcha config's multi-head model: the best checkpoint, exported when training ends

@pytest.fixture(scope="module")
def captcha(tmp_path_factory):
    folder = tmp_path_factory.mktemp("captcha")
    gin_file, model_dir, output = train(folder, f"""
        include 'gin/multitask_captcha.gin'
        datasets.captcha.train_size = 256
        datasets.captcha.eval_size = 64
        datasets.captcha.cache_dir = '{folder / "cache"}'
        Experiment.train_steps = 8
        Experiment.steps_per_loop = 4
        Experiment.eval_every = 4
        Experiment.export_at_end = True
    """)
    inputs = folder / "inputs"
    inputs.mkdir()
    run = built(gin_file, model_dir, "best")  # what export_at_end exported
    eval_images = [image for image, _ in run.datasets[0].eval.take(3).as_numpy_iterator()]
    for i, image in enumerate(eval_images):
        write_image(inputs / f"{i}.png", np.round(image * 255).astype(np.uint8))
    from captcha.image import ImageCaptcha  # pylint: disable=import-outside-toplevel
    ImageCaptcha().write("2468", str(inputs / "drawn.png"))
    ImageCaptcha().write("1357", str(inputs / "drawn.jpg"), format="jpeg")
    files, features, expected = reference(run, inputs)
    np.testing.assert_array_equal(features[:3], np.stack(eval_images))
    return dict(folder=folder, model_dir=model_dir, output=output, run=run, files=files,
                features=features, expected=expected)


def test_captcha_exports_its_best_checkpoint_per_head(captcha):
    best = json.loads((captcha["model_dir"] / "checkpoints" / "best" /
                       "best_metric.json").read_text())
    export_dir = captcha["model_dir"] / "export" / str(best["step"])
    assert f"exported the best checkpoint by accuracy/all_heads (step {best['step']}) to " \
           f"{export_dir}" in captcha["output"]
    class_names = json.loads((export_dir / "class_names.json").read_text())
    assert class_names == {f"char_{i}": list("0123456789") for i in range(4)}
    client = run_client(captcha["folder"], export_dir, captcha["features"], captcha["files"])
    check_client_agrees(client, captcha["expected"], class_names)
    text = saved_model_cli(export_dir)
    for head in range(4):
        assert f"outputs['char_{head}_probabilities'] tensor_info:\n        dtype: DT_FLOAT\n" \
               "        shape: (-1, 10)" in text
        assert f"outputs['char_{head}_class_name'] tensor_info:\n        dtype: DT_STRING" \
            in text


def test_captcha_decode_follows_the_drawing_within_one_grey_level(tmp_path, monkeypatch):
    from captcha.image import ImageCaptcha  # pylint: disable=import-outside-toplevel
    drawn = ImageCaptcha().generate_image("5079")  # the package draws new noise each call
    monkeypatch.setattr(ImageCaptcha, "generate_image", lambda self, text: drawn)
    with registry.building():
        dataset = registry.find("datasets.captcha").function(train_size=1, eval_size=0,
                                                             cache_dir=str(tmp_path))
    (trained, _), = dataset.train.as_numpy_iterator()
    drawn.save(tmp_path / "drawn.png")
    decoded = dataset.load_file(str(tmp_path / "drawn.png")).numpy()
    assert decoded.shape == trained.shape == (30, 80, 1)
    assert np.abs(decoded - trained).max() <= 1 / 255 + 1e-6


# -- frozen InceptionV3 on a folder of images, exported with --mode=export -----------------

def test_transfer_model_exports_from_the_command_line(tmp_path):
    for seed, (name, colour) in enumerate(COLOURS.items()):
        write_images(tmp_path / "images" / name, colour, 8, seed)
    inputs = tmp_path / "inputs"
    for fmt in ("png", "jpg"):
        write_images(inputs, COLOURS["red"], 2, 7, fmt=fmt)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # image_folder's marks
    config = f"""
        include 'gin/transfer_inception.gin'
        image_folder.directory = '{tmp_path / "images"}'
        image_folder.image_size = (75, 75)
        inception_v3.weights = None
        Experiment.batch_size = 4
        Experiment.train_steps = 2
        Experiment.steps_per_loop = 1
    """
    gin_file, model_dir, _ = train(tmp_path, config, "--mode=train", env=env)
    exported = run_cli(f"--gin_file={gin_file}", f"--model_dir={model_dir}", "--mode=export",
                       f"--export_dir={tmp_path / 'served'}", env=env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert f"(step 2) to {tmp_path / 'served'} in " in exported.stdout
    files, features, expected = reference(built(gin_file, model_dir), inputs)
    client = run_client(tmp_path, tmp_path / "served", features, files)
    check_client_agrees(client, expected, list(COLOURS))
    assert client["float/probabilities"][0].shape == (4, 1)  # binary: P(class 1)


# -- mistakes: one line, exit status 2, nothing written -------------------------------------

OUTSIDE_PLUGINS = '''
"""Integer features (token ids): an export's float32 signature cannot take them."""
import keras
import numpy as np
import tensorflow as tf
from framework.data import Dataset, DatasetInfo
from framework.registry import register


@register.dataset
def token_ids():
    """Eight token ids per example, labelled by the parity of their sum."""
    ids = np.random.default_rng(0).integers(0, 10, (64, 8)).astype(np.int32)
    examples = tf.data.Dataset.from_tensor_slices((ids, ids.sum(axis=1) % 2))
    return Dataset(examples, examples, DatasetInfo("token_ids", (8,), "classification", 2))


@register.model
def bag_of_embeddings(info):
    """Embeddings of the ids, averaged."""
    return keras.Sequential([keras.Input(info.input_shape, dtype="int32"),
                             keras.layers.Embedding(10, 4),
                             keras.layers.GlobalAveragePooling1D(),
                             keras.layers.Dense(info.num_outputs)])
'''


def assert_one_line_error(result, message: str):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: ") and "\n" not in result.stderr.strip()
    assert message in result.stderr, result.stderr


def test_export_without_a_checkpoint_writes_nothing(tmp_path):
    (tmp_path / "experiment.gin").write_text("include 'gin/mlp.gin'\n")
    result = run_cli(f"--gin_file={tmp_path / 'experiment.gin'}",
                     f"--model_dir={tmp_path / 'run'}", "--mode=export")
    assert_one_line_error(result, f"--mode=export needs a trained run, and {tmp_path / 'run'} "
                                  "has no latest checkpoint. Train first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.gin"]


def test_data_an_export_cannot_describe_is_refused_before_anything_is_written(tmp_path):
    package = tmp_path / "site" / "token_plugins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugins.py").write_text(OUTSIDE_PLUGINS)
    (tmp_path / "experiment.gin").write_text(textwrap.dedent("""
        import token_plugins.plugins
        Experiment.dataset = @datasets.token_ids
        Experiment.model = @models.bag_of_embeddings
        Experiment.loss = @losses.sparse_categorical_crossentropy
        Experiment.optimizer = @optimizers.adam
        Experiment.batch_size = 16
        Experiment.train_steps = 2
        Experiment.export_at_end = True
    """))
    arguments = [f"--gin_file={tmp_path / 'experiment.gin'}", f"--model_dir={tmp_path / 'run'}"]
    env = {"PYTHONPATH": str(tmp_path / "site")}
    described = ("dataset 'token_ids' gives features of type int32 and shape (8,), which an "
                 "export cannot describe: its signature takes float32 features")
    assert_one_line_error(run_cli(*arguments, "--mode=export", env=env),
                          f"--mode=export: {described}")
    assert_one_line_error(run_cli(*arguments, env=env), f"Experiment.export_at_end: {described}")
    assert not (tmp_path / "run").exists()


@registry.register.dataset
def nan_features():
    """Test data: examples whose features are all NaN."""
    features = np.full((64, 4), np.nan, np.float32)
    examples = tf.data.Dataset.from_tensor_slices((features, np.zeros(64, np.int64)))
    return Dataset(examples, None, DatasetInfo("nan_features", (4,), "classification", 2))


def test_training_stopped_by_the_nan_guard_is_not_exported(tmp_path):
    experiment = from_config([], [
        "Experiment.dataset = @datasets.nan_features", "Experiment.model = @models.mlp",
        "Experiment.loss = @losses.sparse_categorical_crossentropy",
        "Experiment.optimizer = @optimizers.adam", "Experiment.batch_size = 16",
        "Experiment.train_steps = 4", "Experiment.steps_per_loop = 2",
        "Experiment.hooks = [@hooks.nan_guard()]", "Experiment.export_at_end = True"])
    results = experiment.run(str(tmp_path / "run"), "train")
    assert results["exit_status"] == 3
    assert not (tmp_path / "run" / "export").exists()
