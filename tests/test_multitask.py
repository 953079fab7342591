"""Multi-head models: joint and alternating training, per-head losses, metrics and data."""

import re

import gin
import numpy as np
import pytest
import tensorflow as tf

import events
from framework import registry
from framework.errors import UserError
from framework.experiment import Experiment
from framework import assembly
from framework.tasks import all_correct as all_heads_correct
from configs import CLASSIFIER, MIRRORED
from helpers import run_cli

JOINT = CLASSIFIER + """
Experiment.dataset = @datasets.synthetic_heads
Experiment.model = @models.multi_head
models.multi_head.trunk = @models.mlp
models.mlp.hidden_units = (16,)
Experiment.batch_size = 16
Experiment.train_steps = 8
Experiment.steps_per_loop = 3
Experiment.summary_every = 4
Experiment.checkpoint_every = 4
datasets.synthetic_heads.train_size = 64
datasets.synthetic_heads.eval_size = 32
optimizers.adam.learning_rate = 0.01
"""
# Two datasets, each labelling one head: alternating training.
ALTERNATING = JOINT + """
Experiment.dataset = [@only_a/datasets.synthetic_heads, @only_b/datasets.synthetic_heads]
only_a/datasets.synthetic_heads.labelled = ['a']
only_b/datasets.synthetic_heads.labelled = ['b']
only_b/datasets.synthetic_heads.seed = 1
"""
def experiment(config, model_dir, extra=""):
    gin.clear_config()
    gin.parse_config(config + extra)
    built = Experiment()
    return built


def trained(config, model_dir, extra="", mode="train"):
    """(the run as its last checkpoint left it, its results) after a run in model_dir."""
    built = experiment(config, model_dir, extra)
    results = built.run(str(model_dir), mode)
    return assembly.build(built, str(model_dir)), results


def head_kernel(model, head):
    return model.get_layer("heads").get_layer(head).kernel.numpy()


def initial_weights(config, model_dir, extra=""):
    built = experiment(config, model_dir, extra)
    return [v.numpy() for v in assembly.build(built, str(model_dir)).model.weights]


def test_all_heads_accuracy_on_a_hand_made_batch():
    labels = {"digit": tf.constant([1, 2, 0]), "odd": tf.constant([1, 0, 1])}
    outputs = {"digit": tf.constant([[0., 5., 0.], [0., 0., 5.], [0., 5., 0.]]),  # right, right, wrong
               "odd": tf.constant([[3.], [-1.], [2.]])}  # binary logits: right, right, right
    correct = all_heads_correct(["digit", "odd"], labels, outputs)
    assert correct.numpy().tolist() == [True, True, False]
    outputs["odd"] = tf.constant([[-3.], [-1.], [2.]])  # now the first example's odd is wrong
    correct = all_heads_correct(["digit", "odd"], labels, outputs)
    assert correct.numpy().tolist() == [False, True, False]


def test_joint_training_learns_every_head_and_writes_per_head_summaries(tmp_path):
    _, results = trained(JOINT, tmp_path, "Experiment.train_steps = 60\n"
                                            "datasets.synthetic_heads.train_size = 256",
                         mode="train_and_eval")
    for head in ("a", "b"):
        assert results["eval"][f"accuracy/{head}"] > 0.9
    assert results["eval"]["accuracy/all_heads"] > 0.8
    # The summed loss is the sum of the heads' losses (loss weights 1).
    assert results["eval"]["loss"] == pytest.approx(
        results["eval"]["loss/a"] + results["eval"]["loss/b"], rel=1e-5)
    evaluation = events.read(tmp_path / "eval")
    assert {"loss", "loss/a", "loss/b", "accuracy/a", "accuracy/b",
            "accuracy/all_heads"} <= set(evaluation)
    assert float(evaluation["accuracy/all_heads"][-1][1]) == pytest.approx(
        results["eval"]["accuracy/all_heads"])
    assert {"loss/a", "accuracy/b", "accuracy/all_heads"} <= set(events.read(tmp_path / "train"))


def test_loss_weight_scales_its_heads_gradient(tmp_path):
    # One SGD step: a head's variables move by -rate * weight * gradient of its own loss.
    sgd = "Experiment.optimizer = @optimizers.sgd\noptimizers.sgd.learning_rate = 0.5\n" \
          "Experiment.train_steps = 1\n"
    weighted = sgd + "models.multi_head.heads = [@a/Head()]\na/Head.name = 'a'\n" \
                     "a/Head.loss_weight = 3.0\n"
    start = initial_weights(JOINT, tmp_path / "init", sgd)
    plain, _ = trained(JOINT, tmp_path / "plain", sgd)
    scaled, _ = trained(JOINT, tmp_path / "scaled", weighted)
    index = {v.path: i for i, v in enumerate(plain.model.weights)}
    a_kernel = plain.model.get_layer("heads").get_layer("a").kernel.path
    b_kernel = plain.model.get_layer("heads").get_layer("b").kernel.path
    delta = lambda exp, path: exp.model.weights[index[path]].numpy() - start[index[path]]  # noqa: E731
    assert np.abs(delta(plain, a_kernel)).max() > 1e-4
    np.testing.assert_allclose(delta(scaled, a_kernel), 3.0 * delta(plain, a_kernel),
                               rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(delta(scaled, b_kernel), delta(plain, b_kernel),
                               rtol=1e-4, atol=1e-7)


def test_a_head_no_dataset_feeds_keeps_its_initial_weights(tmp_path):
    never_b = "Experiment.dataset_schedule = 'weighted'\nExperiment.dataset_weights = [1, 0]\n"
    before = assembly.build(experiment(ALTERNATING, tmp_path / "init", never_b),
                            str(tmp_path / "init"))
    a_before, b_before = (head_kernel(before.model, h) for h in "ab")
    built, results = trained(ALTERNATING, tmp_path / "run", never_b)
    np.testing.assert_array_equal(head_kernel(built.model, "b"), b_before)  # Adam, 8 steps
    assert np.abs(head_kernel(built.model, "a") - a_before).max() > 1e-3
    # Training metrics report only the head that was trained.
    assert "loss/a" in results["train"] and "loss/b" not in results["train"]
    # Round robin feeds both.
    both, _ = trained(ALTERNATING, tmp_path / "both")
    assert np.abs(head_kernel(both.model, "b") - b_before).max() > 1e-3


def test_alternating_training_shows_the_heads_its_first_dataset_labels(tmp_path):
    # As gin/multitask_alternating.gin does: the prediction grid after an evaluation
    # comes from the first dataset, which labels head 'a' alone.
    trained(ALTERNATING, tmp_path / "run", "Monitoring.images_at_eval = True\n"
                                          "Experiment.eval_every = 4\n", "train_and_eval")
    evaluation = events.read(tmp_path / "run" / "eval")
    assert [step for step, _ in evaluation["predictions"]] == [4, 8]
    assert evaluation["predictions"][-1][1][2].startswith(b"\x89PNG")


def test_alternating_training_resumes_exactly(tmp_path):
    weighted = ("Experiment.dataset_schedule = 'weighted'\n"
                "Experiment.dataset_weights = [0.7, 0.3]\n")
    straight, _ = trained(ALTERNATING, tmp_path / "straight", weighted)
    trained(ALTERNATING, tmp_path / "resumed", weighted + "Experiment.train_steps = 5")
    resumed, results = trained(ALTERNATING, tmp_path / "resumed", weighted)
    assert results["step"] == 8
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_mirrored_alternating_training_agrees_with_one_device(tmp_path):
    one, _ = trained(ALTERNATING, tmp_path / "one")
    two, _ = trained(ALTERNATING, tmp_path / "two", MIRRORED)
    assert two.strategy.num_replicas_in_sync == 2
    for a, b in zip(one.model.weights, two.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra, message", [
    ("Experiment.model = @models.mlp",
     "labels the heads a, b, so it needs a multi-head model"),
    ("models.multi_head.heads = [@c/Head()]\nc/Head.name = 'c'",
     "Head 'c' is not labelled by dataset 'synthetic_heads'; its heads are a, b"),
    ("Experiment.dataset = [@datasets.synthetic_heads, @datasets.synthetic]",
     "needs multi-head datasets"),
])
def test_bad_multi_head_configs_fail_with_the_fix(tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        assembly.build(experiment(JOINT, tmp_path, extra), str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_dataset_weights_must_match_the_datasets(tmp_path):
    built = experiment(ALTERNATING, tmp_path, "Experiment.dataset_schedule = 'weighted'\n"
                                              "Experiment.dataset_weights = [1.0]")
    with pytest.raises(UserError, match="must be 2 non-negative numbers"):
        assembly.build(built, str(tmp_path))


def build_dataset(plugin, **kwargs):
    with registry.building():
        return registry.find(f"datasets.{plugin}").function(**kwargs)


def test_captcha_is_drawn_once_then_read_from_its_cache(tmp_path, monkeypatch):
    from plugins.datasets import captcha
    dataset = build_dataset("captcha", length=3, train_size=6, eval_size=2,
                            cache_dir=str(tmp_path))
    assert [h.name for h in dataset.info.heads] == ["char_0", "char_1", "char_2"]
    assert dataset.info.heads[0].class_names == tuple("0123456789")
    images, labels = next(iter(dataset.train.batch(6)))
    assert images.shape == (6, 30, 80, 1) and 0.0 <= float(tf.reduce_min(images)) \
        and float(tf.reduce_max(images)) <= 1.0 and float(tf.math.reduce_std(images)) > 0.01
    assert sorted(labels) == ["char_0", "char_1", "char_2"]
    assert all(0 <= int(v) < 10 for head in labels.values() for v in head)
    assert len(list(tmp_path.glob("captcha-*.npz"))) == 1

    def no_drawing(*args):
        raise AssertionError("drew captchas although they were cached")
    monkeypatch.setattr(captcha, "_draw", no_drawing)
    again = build_dataset("captcha", length=3, train_size=6, eval_size=2,
                          cache_dir=str(tmp_path))
    images_again, labels_again = next(iter(again.train.batch(6)))
    np.testing.assert_array_equal(images, images_again)
    for head in labels:
        np.testing.assert_array_equal(labels[head], labels_again[head])


def test_fashion_mnist_heads_label_coarse_classes_and_split_parts():
    from plugins.datasets.fashion_mnist_heads import COARSE_OF_FINE
    first = build_dataset("fashion_mnist_heads", train_part=(0, 2))
    second = build_dataset("fashion_mnist_heads", heads=("coarse",), train_part=(1, 2))
    assert first.info.train_size == second.info.train_size == 30000
    assert [h.name for h in second.info.heads] == ["coarse"]
    _, labels = next(iter(first.train.batch(500)))
    fine, coarse = labels["fine"].numpy(), labels["coarse"].numpy()
    assert coarse.tolist() == [COARSE_OF_FINE[f] for f in fine]
    # Sandals (5), sneakers (7), ankle boots (9) are footwear (1).
    assert {int(c) for f, c in zip(fine, coarse) if f in (5, 7, 9)} == {1}


def test_captcha_config_trains_and_predicts_from_the_command_line(tmp_path):
    from captcha.image import ImageCaptcha
    arguments = ["--gin_file=gin/multitask_captcha.gin", f"--model_dir={tmp_path / 'run'}",
                 "--gin_bindings=datasets.captcha.train_size = 128",
                 "--gin_bindings=datasets.captcha.eval_size = 32",
                 "--gin_bindings=Experiment.train_steps = 2",
                 f"--gin_bindings=datasets.captcha.cache_dir = '{tmp_path / 'cache'}'"]
    result = run_cli(*arguments)
    assert result.returncode == 0, result.stderr
    evaluation = events.read(tmp_path / "run" / "eval")
    assert {f"accuracy/char_{i}" for i in range(4)} | {"accuracy/all_heads", "loss/char_3"} \
        <= set(evaluation)
    # base.gin's TensorBoard images, per head for the confusion matrices.
    assert {f"confusion_matrix/char_{i}" for i in range(4)} | {"predictions"} <= set(evaluation)
    ImageCaptcha().write("2468", str(tmp_path / "2468.png"))
    predicted = run_cli(*arguments, "--mode=predict", f"--predict={tmp_path / '2468.png'}",
                        "--top_k=2")
    assert predicted.returncode == 0, predicted.stderr
    line = predicted.stdout.strip().splitlines()[-1]
    # One part per head, each with its top two digits and their probabilities.
    assert line.startswith(f"{tmp_path / '2468.png'}: char_0: ")
    assert re.fullmatch(r".*: " + r" \| ".join(
        rf"char_{i}: \d [01]\.\d{{3}}, \d [01]\.\d{{3}}" for i in range(4)), line), line
