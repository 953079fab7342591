"""A throwaway PostgreSQL server for tests.

`postgres_server()` starts a real server from the PostgreSQL binaries installed on the
machine (Debian's `postgresql` package: /usr/lib/postgresql/<version>/bin), in a fresh
temporary directory, listening on 127.0.0.1 at a free port, with password authentication
(scram-sha-256) for a superuser with a random password, and one empty database. It yields
a `PostgresServer` that tells how to connect; on exit, also when the body raised, the server
is stopped and the directory removed.

PostgreSQL refuses to run as root: when the tests run as root, the server commands run as
the `postgres` system user (which the package creates) through `runuser`, and the temporary
directory belongs to that user. The client side (the tests) keeps running as root.

When no server can be started for a reason of the machine (binaries missing, no `postgres`
user), `PostgresUnavailable` says why; the `postgres` fixture turns it into a skip.
"""

import contextlib
import dataclasses
import glob
import os
import pathlib
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from typing import Iterator, List

import pytest

INSTALL_HINT = "install PostgreSQL's server: apt-get install postgresql"


class PostgresUnavailable(Exception):
    """No PostgreSQL server can run on this machine; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    """How to reach a running server started by `postgres_server()`."""

    user: str
    password: str
    host: str
    port: int
    database: str
    directory: pathlib.Path  # holds the data, the unix socket and the log; removed on exit

    @property
    def url(self) -> str:
        """The SQLAlchemy URL, password included."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def url_without_password(self) -> str:
        """The same URL without the password, which libpq then takes from PGPASSWORD."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"


def find_binaries() -> pathlib.Path:
    """The bin folder of the newest PostgreSQL installed, else the one of `initdb` on PATH."""
    def version(path):
        return [int(part) for part in re.findall(r"\d+", path.split("/")[-3])]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    initdb = found[-1] if found else shutil.which("initdb")
    if not initdb:
        raise PostgresUnavailable(f"no PostgreSQL server binaries (initdb) found; {INSTALL_HINT}")
    return pathlib.Path(initdb).parent


def _as_server_user() -> List[str]:
    """The command prefix that runs server commands as an unprivileged user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, and there is no `postgres` user to run the server as; {INSTALL_HINT}"
        ) from None
    if not shutil.which("runuser"):
        raise PostgresUnavailable("running as root, and `runuser` is missing (util-linux)")
    return ["runuser", "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: List[str], directory: pathlib.Path, env=None) -> None:
    """Runs a command, in `directory` (which the server user can read); raises with its output."""
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        log = directory / "server.log"
        raise RuntimeError(
            f"{shlex.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            + (f"\nserver log:\n{log.read_text()}" if log.exists() else ""))


@contextlib.contextmanager
def postgres_server(user: str = "tester", database: str = "test") -> Iterator[PostgresServer]:
    """Starts a PostgreSQL server for the body of the `with`; stops and removes it after.

    Raises PostgresUnavailable when the machine cannot run one (see the module's docstring).
    """
    bin_dir = find_binaries()
    as_server_user = _as_server_user()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="postgres-test-"))
    data = directory / "data"
    pg_ctl = [*as_server_user, str(bin_dir / "pg_ctl"), "--pgdata", str(data)]
    try:
        if as_server_user:
            shutil.chown(directory, "postgres", "postgres")
        password = secrets.token_urlsafe(24)  # letters, digits, - and _: safe in a URL as is
        password_file = directory / "password"
        password_file.write_text(password + "\n")
        if as_server_user:
            shutil.chown(password_file, "postgres", "postgres")
        _run([*as_server_user, str(bin_dir / "initdb"), "--pgdata", str(data),
              "--username", user, "--pwfile", str(password_file), "--auth", "scram-sha-256",
              "--encoding", "UTF8", "--locale", "C", "--no-sync"], directory)
        password_file.unlink()

        port = _free_port()
        options = (f"-p {port} -c listen_addresses=127.0.0.1"
                   f" -c unix_socket_directories={shlex.quote(str(directory))}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        _run([*pg_ctl, "--wait", "--log", str(directory / "server.log"), "--options", options,
              "start"], directory)
        server = PostgresServer(user, password, "127.0.0.1", port, database, directory)
        # The client connects over TCP with the password: the way the tests will.
        _run([str(bin_dir / "createdb"), "--host", server.host, "--port", str(port),
              "--username", user, database],
             directory, env={**os.environ, "PGPASSWORD": password})
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*pg_ctl, "--wait", "--mode", "fast", "stop"], cwd=directory,
                           capture_output=True, timeout=120, check=False)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A server shared by the tests of a module (give studies distinct names); skips the
    tests when the machine cannot run one."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(postgres_server())
        except PostgresUnavailable as reason:
            pytest.skip(str(reason))
        yield server
