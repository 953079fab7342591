"""The test PostgreSQL server works the way the search will use it: Optuna's RDBStorage over
TCP with a password, from the URL or from PGPASSWORD; and it is gone after the `with`."""
# pytest passes the `postgres` fixture by its name:
# pylint: disable=redefined-outer-name

import contextlib
import os
import socket

import optuna
import pytest
import sqlalchemy

from postgres_server import PostgresUnavailable, postgres_server
from postgres_server import postgres  # noqa: F401  # pylint: disable=unused-import


def _connect(url):
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_two_storages_share_a_study(postgres):
    asking = optuna.storages.RDBStorage(postgres.url)
    telling = optuna.storages.RDBStorage(postgres.url)
    try:
        study = optuna.create_study(study_name="shared", storage=asking)
        trial = study.ask()
        x = trial.suggest_float("x", -1.0, 1.0)
        optuna.load_study(study_name="shared", storage=telling).tell(trial.number, x * x)

        (done,) = optuna.load_study(study_name="shared", storage=asking).trials
        assert done.state == optuna.trial.TrialState.COMPLETE
        assert done.params == {"x": x} and done.value == x * x
    finally:
        asking.engine.dispose()
        telling.engine.dispose()


def test_password_can_come_from_pgpassword(postgres, monkeypatch):
    monkeypatch.setenv("PGPASSFILE", os.devnull)  # no ~/.pgpass to fall back on
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="password"):
        optuna.storages.RDBStorage(postgres.url_without_password)
    wrong = sqlalchemy.engine.make_url(postgres.url).set(password="wrong")
    with pytest.raises(sqlalchemy.exc.OperationalError, match="password authentication failed"):
        _connect(wrong)

    monkeypatch.setenv("PGPASSWORD", postgres.password)
    storage = optuna.storages.RDBStorage(postgres.url_without_password)
    try:
        optuna.create_study(study_name="from-pgpassword", storage=storage)
        assert "from-pgpassword" in optuna.get_all_study_names(storage)
    finally:
        storage.engine.dispose()


def _processes_mentioning(text):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if text.encode() in cmdline.read():
                    found.append(entry)
        except OSError:  # not a process, or it ended meanwhile
            pass
    return found


@pytest.mark.parametrize("body_raises", [False, True])
def test_server_is_stopped_and_removed_after_the_with(body_raises):
    try:
        with pytest.raises(ZeroDivisionError) if body_raises else contextlib.nullcontext():
            with postgres_server() as server:
                _connect(server.url)
                assert _processes_mentioning(str(server.directory))
                if body_raises:
                    raise ZeroDivisionError
    except PostgresUnavailable as reason:
        pytest.skip(str(reason))

    assert not server.directory.exists()
    assert not _processes_mentioning(str(server.directory))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5).close()
