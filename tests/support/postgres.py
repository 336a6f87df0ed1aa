"""A PostgreSQL server for the tests: Debian's ``postgresql`` package (installed with apt when
missing), a fresh cluster in a temporary folder, listening on 127.0.0.1 only with password
authentication, stopped by its PID.

PostgreSQL refuses to run as root; as root the cluster belongs to the package's ``postgres``
user (its folder is made outside pytest's private temporary folders, which that user cannot
enter).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fraud_cli.servers import free_port, wait_for_port
from tests.support.containers import ensure_apt

USER, PASSWORD, DATABASE = "dagster", "dagster-test-password", "dagster"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str
    started_in: float

    @property
    def env(self) -> dict[str, str]:
        """The production instance's settings (deploy/dagster/dagster.yaml) for this server."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }

    def query(self, sql: str) -> list[tuple[object, ...]]:
        import psycopg2

        with (
            contextlib.closing(
                psycopg2.connect(
                    host=self.host,
                    port=self.port,
                    user=self.user,
                    password=self.password,
                    dbname=self.database,
                )
            ) as conn,
            conn.cursor() as cursor,
        ):
            cursor.execute(sql)
            return list(cursor.fetchall())


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        ensure_apt("pg_ctlcluster", "postgresql")
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "apt installed postgresql but no /usr/lib/postgresql/*/bin/initdb"
    return Path(found[-1]).parent


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Start a new cluster on a free loopback port; yield how to reach it; stop it by PID."""
    bindir = _bindir()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fraud-postgres-", dir="/tmp"))
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    data, socket_dir = workdir / "data", workdir / "run"
    socket_dir.mkdir()
    pwfile = workdir / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        for path in (workdir, socket_dir, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    as_owner = {"user": owner.pw_uid, "group": owner.pw_gid} if owner else {}
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}"]
        + ["--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
        **as_owner,  # type: ignore[arg-type]
    )
    port = free_port()
    log = open(workdir / "postgres.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port)]
        + ["-k", str(socket_dir), "-c", "fsync=off", "-c", "max_connections=200"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **as_owner,  # type: ignore[arg-type]
    )
    try:
        wait_for_port(port, proc, timeout=60)
        server = Postgres("127.0.0.1", port, USER, PASSWORD, DATABASE, 0.0)
        _create_database(server)
        yield Postgres(**{**server.__dict__, "started_in": time.monotonic() - started})
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _create_database(server: Postgres) -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(
                host=server.host,
                port=server.port,
                user=server.user,
                password=server.password,
                dbname="postgres",
            )
            break
        except psycopg2.OperationalError:  # accepting connections only after recovery
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with contextlib.closing(conn):
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {server.database}")
