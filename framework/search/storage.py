"""Where a study lives: a journal file in the study folder, or a database several machines
share. What --storage may be, how credentials stay off the command line, and how a URL is
shown without its password.

    (no --storage)                     study_dir/study.journal: Optuna's journal file, safe
                                       for several processes on one machine (BUILD_NOTES.md
                                       measures it against SQLite)
    --storage=postgresql://user@host/db   any SQLAlchemy URL Optuna's RDBStorage takes
    --storage=env:STUDY_DB             the URL is in environment variable STUDY_DB
    --storage=file:/run/secrets/db     the URL is the first line of that file

A password may also stay out of the URL altogether: PostgreSQL's driver reads PGPASSWORD
and ~/.pgpass.
"""

import os
import random
import time

import optuna
import sqlalchemy

from framework.errors import UserError

JOURNAL_FILE = "study.journal"
# How the search command hands the URL to its trial processes: the environment, not the
# command line, where `ps` would show a password.
STORAGE_ENV = "TF_LOOP_LAB_SEARCH_STORAGE"
# Database storages record a heartbeat for each running trial; one silent for GRACE_S is
# failed (and retried) by whichever worker looks next: a trial on another machine that
# died with it. Trials on this machine are checked at once (framework.search.liveness).
HEARTBEAT_S, GRACE_S = 20, 120
# Optuna creates a fresh database's tables on first open, and PostgreSQL's catalog lets only
# one of several processes doing that at once succeed: the others see "already exists" or a
# duplicate key. Opening again then finds the tables made; these are the tries allowed.
OPEN_TRIES = 5


def resolve(flag: str | None, study_dir: str) -> str:
    """The storage URL that --storage names (see the module docstring); a journal file's
    URL is 'journal:<absolute path>'."""
    if not flag:
        return "journal:" + os.path.abspath(os.path.join(study_dir, JOURNAL_FILE))
    if flag.startswith("env:"):
        name = flag[len("env:"):]
        if not os.environ.get(name):
            raise UserError(f"--storage={flag}: environment variable {name} is not set. "
                            f"Fix: export {name}='postgresql://user:password@host/db'.")
        return _checked(os.environ[name], f"environment variable {name}")
    if flag.startswith("file:"):
        path = flag[len("file:"):]
        try:
            with open(path, encoding="utf-8") as f:
                url = f.readline().strip()
        except OSError as error:
            raise UserError(f"--storage={flag}: cannot read {path} ({error.strerror}).") from error
        return _checked(url, path)
    if flag.startswith("journal:"):
        return "journal:" + os.path.abspath(flag[len("journal:"):])
    return _checked(flag, "--storage")


def _checked(url: str, source: str) -> str:
    try:
        sqlalchemy.engine.make_url(url)
    except Exception as error:  # pylint: disable=broad-except  (SQLAlchemy's parse errors vary)
        raise UserError(f"The storage URL from {source} is not a database URL "
                        "(postgresql://user@host:5432/db, sqlite:///path.db) nor "
                        "journal:PATH.") from error
    return url


def shown(url: str) -> str:
    """The URL as it may be printed or saved: its password, if any, replaced by ***."""
    if url.startswith("journal:"):
        return url[len("journal:"):]
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def open_storage(url: str, on_stale_trial=None) -> optuna.storages.BaseStorage:
    """Optuna's storage for `url` (see `resolve`). on_stale_trial(study, frozen_trial): what
    a database storage calls for each trial it fails for a missed heartbeat."""
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    attempt = 1
    while True:
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                failed_trial_callback=on_stale_trial)
        except ImportError as error:
            raise UserError(f"The database driver for {shown(url)} is not installed "
                            f"({error}). For PostgreSQL: pip install 'tf-loop-lab[postgres]'."
                            ) from error
        except sqlalchemy.exc.SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            if attempt < OPEN_TRIES and _lost_creation_race(reason):
                time.sleep(random.uniform(0.05, 0.2) * attempt)
                attempt += 1
                continue
            raise UserError(f"Cannot open the study storage {shown(url)}: {reason}. Check "
                            "that the server runs and the URL, user and password are right."
                            ) from error


def _lost_creation_race(reason: str) -> bool:
    """Whether a database error says another process created the same table, type or row
    first (PostgreSQL's and SQLite's wordings)."""
    reason = reason.lower()
    return any(words in reason for words in
               ("already exists", "duplicate key", "unique constraint failed"))
