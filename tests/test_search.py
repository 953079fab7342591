"""The search command end to end on generated data: the space and its errors, pruning, the
study's files, best.gin retraining its trial, TensorBoard's HParams view, several workers
and commands on one study, and a study that survives kill -9."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading

import gin
import optuna
import pytest
import sqlalchemy

import configs
import events
from helpers import REPO, cli_environment, run_cli
from framework.errors import UserError
from framework.search import space as search_space
from framework.search import storage as storages
from framework.search import study as studies
from postgres_server import postgres  # noqa: F401  # pylint: disable=unused-import

# pytest passes fixtures by their names:
# pylint: disable=redefined-outer-name

# Four trials of 60 steps, evaluated every 20: plain SGD learns the synthetic classes at
# learning rate 0.1 and gets nowhere at 1000. The good trials come first, so successive
# halving has their losses at 20 steps to compare the hopeless ones with.
TINY_STUDY = configs.CLASSIFIER + """
Experiment.model = @models.mlp
Experiment.optimizer = @optimizers.sgd
Experiment.batch_size = 32
Experiment.train_steps = 60
Experiment.steps_per_loop = 10
Experiment.eval_every = 20
Experiment.checkpoint_every = 20
Experiment.summary_every = 20
datasets.synthetic.train_size = 256
datasets.synthetic.eval_size = 64
models.mlp.hidden_units = (16,)
optimizers.sgd.learning_rate = 0.1
Search.parameters = {
    'optimizers.sgd.learning_rate': {'choices': [0.1, 1000.0]},
    'models.mlp.hidden_units': {'choices': [(16,), (32,)]},
}
Search.first_trials = [
    {'optimizers.sgd.learning_rate': 0.1, 'models.mlp.hidden_units': (16,)},
    {'optimizers.sgd.learning_rate': 0.1, 'models.mlp.hidden_units': (32,)},
    {'optimizers.sgd.learning_rate': 1000.0, 'models.mlp.hidden_units': (16,)},
    {'optimizers.sgd.learning_rate': 1000.0, 'models.mlp.hidden_units': (32,)},
]
Search.objective = 'loss'
Search.direction = 'minimize'
Search.sampler = 'random'
Search.pruner = 'successive_halving'
Search.trials = 4
Search.reduction_factor = 2
"""


def write_config(tmp_path, text: str, name: str = "study.gin") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def search_command(*args) -> list[str]:
    return [sys.executable, "-m", "framework.search", *args]


def run_search(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(search_command(*args), cwd=REPO, env=cli_environment(env),
                          capture_output=True, text=True, timeout=timeout)


def read_trials(study_dir) -> list[dict]:
    with open(os.path.join(study_dir, "trials.csv"), encoding="utf-8") as f:
        return list(csv.DictReader(f))


def journal_study(study_dir) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        os.path.join(study_dir, "study.journal")))
    return optuna.load_study(study_name="search", storage=storage)


# -- the space and its errors ------------------------------------------------------------

def load_space(tmp_path, parameters: str, extra: str = ""):
    base = TINY_STUDY.split("Search.parameters")[0]
    config = write_config(tmp_path, f"{base}\nSearch.parameters = {parameters}\n{extra}")
    return search_space.load([config], [])


def test_space_turns_into_distributions_and_gin_bindings(tmp_path):
    space = load_space(tmp_path, "{'models.mlp.hidden_units': {'choices': [(16,), (8, 8)]}, "
                       "'optimizers.sgd.learning_rate': {'float': (1e-3, 1.0), 'log': True}, "
                       "'Experiment.batch_size': {'int': (16, 64), 'step': 16}}")
    assert space.train_steps == 60 and space.min_steps == 20 and space.seed == 42
    study = optuna.create_study(sampler=space.make_sampler(0))
    trial = study.ask()
    params = space.suggest(trial)
    values = space.values(params)
    assert values["models.mlp.hidden_units"] in [(16,), (8, 8)]
    assert 1e-3 <= values["optimizers.sgd.learning_rate"] <= 1.0
    assert values["Experiment.batch_size"] in (16, 32, 48, 64)
    bindings = space.bindings(params)
    gin.clear_config()
    gin.parse_config(TINY_STUDY.split("Search.parameters")[0] + "\n".join(bindings))
    assert gin.query_parameter("models.mlp.hidden_units") == values["models.mlp.hidden_units"]


@pytest.mark.parametrize("parameters, extra, message", [
    ("{'models.mlp.hiden_units': {'choices': [(16,)]}}", "",
     "'models.mlp.hiden_units', which this experiment does not use. Did you mean "
     "'models.mlp.hidden_units'"),
    ("{'models.cnn.filters': {'choices': [8, 16]}}", "", "does not use"),
    ("{'models.mlp.hidden_units': {'choices': []}}", "", "must be a non-empty list"),
    ("{'models.mlp.hidden_units': {'choices': [(16,), (16,)]}}", "", "lists a value twice"),
    ("{'optimizers.sgd.learning_rate': {'float': (1.0, 0.1)}}", "", "low 1.0 is above high 0.1"),
    ("{'optimizers.sgd.learning_rate': {'float': (0.0, 0.1), 'log': True}}", "",
     "a log scale needs low above 0"),
    ("{'Experiment.batch_size': {'int': (16, 64), 'log': True, 'step': 16}}", "",
     "'log' and 'step' cannot be combined"),
    ("{'Experiment.batch_size': {'int': (16.5, 64)}}", "", "two integers"),
    ("{'Experiment.batch_size': {'range': (16, 64)}}", "", "must be a dict with one of"),
    ("{}", "", "at least one gin parameter"),
    ("{'optimizers.sgd.learning_rate': {'float': (0.01, 0.1)}}", "Search.sampler = 'grid'",
     "needs a finite set of values"),
    ("{'Experiment.batch_size': {'choices': [16]}}", "Search.direction = 'up'",
     "Search.direction must be one of 'maximize', 'minimize'"),
    ("{'Experiment.batch_size': {'choices': [16]}}", "Search.pruner = 'median_pruner'",
     "Search.pruner must be one of"),
    ("{'Experiment.batch_size': {'choices': [16]}}", "Experiment.eval_every = None",
     "judges trials at their evaluations"),
    ("{'Experiment.batch_size': {'choices': [16]}}", "Search.trials = 0",
     "Search.trials must be an integer of at least 1"),
    ("{'Experiment.batch_size': {'int': (16, 64)}}",
     "Search.first_trials = [{'Experiment.batch_size': 128}]",
     "Search.first_trials: Experiment.batch_size = 128 is outside the parameter's values "
     "(16 to 64)"),
    ("{'Experiment.batch_size': {'int': (16, 64)}}", "Search.first_trials = [{'seed': 1}]",
     "seed is not in Search.parameters"),
])
def test_a_mistake_in_the_space_is_one_clear_error(tmp_path, parameters, extra, message):
    with pytest.raises(UserError, match=re.escape(message)):
        load_space(tmp_path, parameters, extra)


def test_a_bad_space_stops_the_command_before_anything_is_written(tmp_path):
    config = write_config(tmp_path, TINY_STUDY.replace("(16,), (32,)", ""))
    result = run_search(f"--gin_file={config}", f"--study_dir={tmp_path / 'study'}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: Search.parameters['models.mlp.hidden_units']: "
                                    "'choices' must be a non-empty list"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "study").exists()


def test_an_objective_the_evaluation_lacks_stops_the_search_with_one_error(tmp_path):
    config = write_config(tmp_path, TINY_STUDY.replace("Search.objective = 'loss'",
                                                       "Search.objective = 'acuracy'"))
    result = run_search(f"--gin_file={config}", f"--study_dir={tmp_path / 'study'}",
                        "--workers=2")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: Search.objective = 'acuracy' is not among this "
                                    "experiment's eval metrics: accuracy, loss."), result.stderr
    assert "Traceback" not in result.stderr
    # Both workers stopped at once: no trial beyond the two that had started, none left
    # running.
    trials = journal_study(tmp_path / "study").trials
    assert len([t for t in trials if "process" in t.user_attrs]) <= 2
    assert "RUNNING" not in {t.state.name for t in trials}


# -- the study: configs, liveness, retries ---------------------------------------------------

def test_a_study_refuses_another_config_but_not_more_trials():
    storage = optuna.storages.InMemoryStorage()
    config = "Experiment.batch_size = 32\nSearch.trials = 4\n"
    studies.open_study(storage, "s", "maximize", config)
    studies.open_study(storage, "s", "maximize", config.replace("4", "8"))  # extended
    with pytest.raises(UserError, match=r"(?s)another config.*-Experiment.batch_size = 32\n"
                                        r"\+Experiment.batch_size = 64"):
        studies.open_study(storage, "s", "maximize", config.replace("32", "64"))
    with pytest.raises(UserError, match="created to maximize"):
        studies.open_study(storage, "s", "minimize", config)


def test_of_two_commands_creating_a_study_at_once_the_one_whose_config_lost_refuses():
    class OtherCommandWritesFirst(optuna.storages.InMemoryStorage):
        """A database storage at the moment another command stored its config first: a
        database keeps the first write of a key and drops later ones."""

        def set_study_user_attr(self, study_id, key, value):
            if key not in self.get_study_user_attrs(study_id):
                other = {"config_sha256": "0" * 64, "config": "Experiment.batch_size = 64\n"}
                super().set_study_user_attr(study_id, key, other[key])

    with pytest.raises(UserError, match=r"(?s)another config.*-Experiment.batch_size = 64\n"
                                        r"\+Experiment.batch_size = 32"):
        studies.open_study(OtherCommandWritesFirst(), "s", "maximize",
                           "Experiment.batch_size = 32\n")


def test_a_trial_whose_process_died_is_failed_and_queued_again():
    storage = optuna.storages.InMemoryStorage()
    study = studies.open_study(storage, "s", "maximize", "")
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = studies.this_process()
    assert studies.is_alive(alive) is True
    assert studies.is_alive({**alive, "pid": dead.pid}) is False
    assert studies.is_alive({**alive, "host": "another-machine"}) is None
    for process in ({**alive, "pid": dead.pid}, alive):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr("process", process)
    assert studies.fail_dead_trials(study, storage) == [0]
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "RUNNING", "WAITING"]
    assert study.trials[2].user_attrs == {"retry_of": 0, "attempt": 2}
    census = studies.census(study)  # the failed trial's place goes to its continuation
    assert (census.counted, census.failed, census.running, census.waiting) == (2, 0, 1, 1)
    continuation = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    assert continuation.number == 2 and continuation.params == study.trials[0].params


# -- a study end to end ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The four trials of TINY_STUDY run by two workers on the default (journal) storage."""
    folder = tmp_path_factory.mktemp("tiny_study")
    config = write_config(folder, TINY_STUDY)
    study_dir = folder / "study"
    result = run_search(f"--gin_file={config}", f"--study_dir={study_dir}", "--workers=2")
    assert result.returncode == 0, result.stdout + result.stderr
    return study_dir, result


def test_trials_are_ordinary_runs_and_hopeless_ones_are_pruned(tiny_study):
    study_dir, result = tiny_study
    trials = read_trials(study_dir)
    assert sorted(int(t["number"]) for t in trials) == [0, 1, 2, 3]
    for trial in trials:
        learning_rate = float(trial["optimizers.sgd.learning_rate"])
        if learning_rate == 1000.0:
            assert (trial["state"], trial["steps"]) == ("PRUNED", "20"), trial
        elif trial["state"] == "COMPLETE":  # the two good trials run at once, so
            assert trial["steps"] == "60", trial  # successive halving may stop one of them
            assert float(trial["value"]) < 0.5
        run = study_dir / f"trial_{int(trial['number']):04d}"
        config = (run / "operative_config.gin").read_text()
        assert f"sgd.learning_rate = {trial['optimizers.sgd.learning_rate']}" in config
        assert f"mlp.hidden_units = {trial['models.mlp.hidden_units']}" in config
        assert (run / "checkpoints" / "checkpoint").exists() or trial["state"] == "PRUNED"
    # Every combination once.
    assert len({(t["optimizers.sgd.learning_rate"], t["models.mlp.hidden_units"])
                for t in trials}) == 4
    study = journal_study(study_dir)
    assert [t.state.name for t in study.trials].count("RUNNING") == 0
    assert len(study.trials) == 4
    assert "COMPLETE" in {t["state"] for t in trials}
    assert re.search(r"4/4 trials done \([23] pruned, 0 failed\)", result.stdout)


def test_best_gin_retrains_the_best_trial(tiny_study, tmp_path):
    study_dir, _ = tiny_study
    complete = [t for t in read_trials(study_dir) if t["state"] == "COMPLETE"]
    best = min(complete, key=lambda t: float(t["value"]))
    assert f"trial {best['number']}," in (study_dir / "best.gin").read_text()
    # The trial trained on its worker's share of the CPUs: the same thread pools here.
    trial_config = (study_dir / f"trial_{int(best['number']):04d}" / "operative_config.gin")
    threads = re.findall(r"Experiment\.(\w+_op_threads) = (\d+)", trial_config.read_text())
    result = run_cli(f"--gin_file={study_dir / 'best.gin'}", f"--model_dir={tmp_path / 'again'}",
                     *[f"--gin_bindings=Experiment.{name} = {value}" for name, value in threads])
    assert result.returncode == 0, result.stderr
    loss = float(re.search(r"final eval loss: ([\d.]+)", result.stdout).group(1))
    assert loss == pytest.approx(float(best["value"]), abs=1e-4)
    # The trial itself is a run like any other: it exports.
    trial_dir = study_dir / f"trial_{int(best['number']):04d}"
    exported = run_cli(f"--gin_file={study_dir / 'best.gin'}", f"--model_dir={trial_dir}",
                       "--mode=export", f"--export_dir={tmp_path / 'export'}")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "export" / "saved_model.pb").exists()


def test_hparams_show_the_space_and_every_trial_as_trials_csv_says(tiny_study):
    study_dir, _ = tiny_study
    trials = {f"trial_{int(t['number']):04d}": t for t in read_trials(study_dir)}
    runs = set(trials) | {f"{name}/eval" for name in trials}
    sessions = {"experimentName": "", "startIndex": 0, "sliceSize": 10, "allowedStatuses": [
        "STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]}
    with events.tensorboard_server(study_dir, runs) as get:
        def loaded():
            groups = get("/data/plugin/hparams/session_groups", sessions)["sessionGroups"]
            return len(groups) == 4 and all(len(g["metricValues"]) >= 3 for g in groups) \
                and groups
        groups = events.poll(loaded, 60, "TensorBoard did not load the four trials")
        experiment = get("/data/plugin/hparams/experiment", {"experimentName": ""})
    domains = {info["name"]: info for info in experiment["hparamInfos"]}
    assert domains["optimizers.sgd.learning_rate"]["domainDiscrete"] == [0.1, 1000.0]
    assert domains["models.mlp.hidden_units"]["domainDiscrete"] == ["(16,)", "(32,)"]
    metrics = {(m["name"].get("group", ""), m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {("eval", "loss"), ("", "search/pruned"), ("", "search/steps_trained")} <= metrics
    for group in groups:
        trial = trials[group["name"]]
        assert group["hparams"]["optimizers.sgd.learning_rate"] == \
            float(trial["optimizers.sgd.learning_rate"])
        assert group["hparams"]["models.mlp.hidden_units"] == trial["models.mlp.hidden_units"]
        values = {(m["name"].get("group", ""), m["name"]["tag"]): m["value"]
                  for m in group["metricValues"]}
        assert values["", "search/pruned"] == (trial["state"] == "PRUNED")
        assert values["", "search/steps_trained"] == int(trial["steps"])
        if trial["state"] == "COMPLETE":
            assert values["eval", "loss"] == pytest.approx(float(trial["value"]), abs=1e-5)


# -- faults ------------------------------------------------------------------------------

# Two trials long enough to be killed in the middle, checkpointed every 20 steps.
LONG_TRIALS = TINY_STUDY.split("Search.parameters")[0] + """
Experiment.train_steps = 3000
Experiment.eval_every = 1000
Search.parameters = {'optimizers.sgd.learning_rate': {'float': (0.05, 0.2)}}
Search.objective = 'loss'
Search.direction = 'minimize'
Search.sampler = 'random'
Search.pruner = 'none'
Search.trials = 2
"""


def test_a_study_killed_mid_trial_goes_on_from_the_checkpoint(tmp_path):
    config = write_config(tmp_path, LONG_TRIALS)
    study_dir = tmp_path / "study"
    command = search_command(f"--gin_file={config}", f"--study_dir={study_dir}")
    first = subprocess.Popen(command, cwd=REPO, env=cli_environment(), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = study_dir / "trial_0000" / "checkpoints" / "checkpoint"
    try:
        events.poll(checkpoint.exists, 120, "trial 0 wrote no checkpoint", None)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the command and its trial process
        first.wait()
    assert journal_study(study_dir).trials[0].state.name == "RUNNING"

    result = run_search(*command[3:])
    assert result.returncode == 0, result.stdout + result.stderr
    study = journal_study(study_dir)
    assert [t.state.name for t in study.trials].count("RUNNING") == 0
    assert study.trials[0].state.name == "FAIL"
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state.name == "COMPLETE" and retry.user_attrs["steps"] == 3000
    assert retry.params == study.trials[0].params
    log = (study_dir / f"trial_{retry.number:04d}" / "trial.log").read_text()
    assert re.search(r"resumed from .*ckpt-\d+ \(step [1-9]\d*\)", log), log
    trials = read_trials(study_dir)
    assert len(trials) == 2 and {t["state"] for t in trials} == {"COMPLETE"}
    assert "continues trial 0" in {t["note"] for t in trials}


def test_sigterm_stops_every_worker_with_a_checkpoint_to_go_on_from(tmp_path):
    config = write_config(tmp_path, LONG_TRIALS)
    study_dir = tmp_path / "study"
    command = subprocess.Popen(
        search_command(f"--gin_file={config}", f"--study_dir={study_dir}", "--workers=2"),
        cwd=REPO, env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    checkpoints = [study_dir / f"trial_000{i}" / "checkpoints" / "checkpoint" for i in (0, 1)]
    events.poll(lambda: all(c.exists() for c in checkpoints), 120,
                "the two trials wrote no checkpoint", None)
    command.send_signal(signal.SIGTERM)
    stdout, stderr = command.communicate(timeout=60)
    assert command.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert stdout.count("interrupted at step") == 2, stdout
    study = journal_study(study_dir)
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL", "WAITING", "WAITING"]
    assert {t.user_attrs["retry_of"] for t in study.trials[2:]} == {0, 1}
    for trial in study.trials[:2]:  # each saved where it stopped
        steps = trial.user_attrs["steps"]
        assert 0 < steps < 3000
        assert f"ckpt-{steps}.index" in os.listdir(study_dir / f"trial_{trial.number:04d}" /
                                                   "checkpoints")


# -- many machines: one study in a real PostgreSQL -----------------------------------------

def test_two_commands_share_one_study_through_postgresql(postgres, tmp_path):
    config = write_config(tmp_path, TINY_STUDY.split("Search.first_trials")[0] + """
Search.objective = 'loss'
Search.direction = 'minimize'
Search.sampler = 'random'
Search.pruner = 'none'
Search.trials = 4
""")
    env = {"STUDY_DB": postgres.url}
    commands = [subprocess.Popen(
        search_command(f"--gin_file={config}", f"--study_dir={tmp_path / f'machine{i}'}",
                       "--storage=env:STUDY_DB"),
        cwd=REPO, env=cli_environment(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in (1, 2)]
    outputs = [command.communicate(timeout=600) for command in commands]
    for command, (stdout, stderr) in zip(commands, outputs):
        assert command.returncode == 0, stdout + stderr
        assert postgres.password not in stdout + stderr
        assert postgres.url_without_password.split("@")[1] in stdout  # the study is shown
    study = optuna.load_study(study_name="search", storage=postgres.url)
    counted = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert len(counted) == 4 and {t.state.name for t in counted} == {"COMPLETE"}
    # Each trial ran once, on one of the two machines.
    folders = sorted(path.name for i in (1, 2) for path in (tmp_path / f"machine{i}").glob(
        "trial_*") if (path / "checkpoints").exists())
    assert folders == [f"trial_{t.number:04d}" for t in counted]
    for i in (1, 2):
        assert len(read_trials(tmp_path / f"machine{i}")) == 4
        for path in (tmp_path / f"machine{i}").rglob("*"):
            if path.is_file():
                assert postgres.password.encode() not in path.read_bytes(), path


def test_machines_opening_a_fresh_database_at_once_all_get_the_study(postgres):
    """Optuna creates a fresh database's tables on first open; when several machines do that
    at the same moment PostgreSQL lets one win and the others must open what it made (before
    the retry, three of four openers failed on every database here)."""
    admin = sqlalchemy.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    for fresh in ("fresh_a", "fresh_b", "fresh_c"):
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {fresh}"))
        url = postgres.url.rsplit("/", 1)[0] + "/" + fresh
        start, errors, opened = threading.Barrier(4), [], []

        def open_at_once():
            start.wait()
            try:
                opened.append(storages.open_storage(url))
            except UserError as error:
                errors.append(str(error))

        threads = [threading.Thread(target=open_at_once) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and len(opened) == 4
        optuna.create_study(study_name="s", storage=opened[0]).optimize(
            lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
        assert len(optuna.load_study(study_name="s", storage=opened[3]).trials) == 2
        with sqlalchemy.create_engine(url).connect() as connection:  # one schema, stamped once
            for table in ("version_info", "alembic_version"):
                rows = connection.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}"))
                assert rows.scalar() == 1, table
        for storage in opened:
            storage.engine.dispose()
    admin.dispose()


def test_the_storage_benchmark_checks_what_it_measures(tmp_path):
    """framework.bench.search_storage (which chose the default storage) still runs, and its
    checks pass on both storages it compares."""
    output = tmp_path / "storages.json"
    result = subprocess.run(
        [sys.executable, "-m", "framework.bench.search_storage", "--processes=2",
         "--trials_per_process=3", "--reports=2", "--storages=journal_symlink,sqlite",
         f"--json={output}"], cwd=REPO, env=cli_environment(), capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr
    rows = json.loads(output.read_text())["results"]
    assert [(r["storage"], r["trials_completed"], r["integrity"]) for r in rows] == [
        ("journal_symlink", 6, "ok"), ("sqlite", 6, "ok")]
