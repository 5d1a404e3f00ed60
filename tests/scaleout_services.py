"""Real services for the scaling tests, each on 127.0.0.1 and always stopped: a PostgreSQL cluster in a temporary
directory (Debian's binaries, run as the ``postgres`` user when the tests run as root) and an ``mlflow server``."""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres_server(database: str = "optuna") -> Iterator[str]:
    """A throw-away PostgreSQL cluster listening on 127.0.0.1 only; yields a SQLAlchemy URL to ``database``."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("needs Debian's postgresql (initdb, pg_ctl): `make system-packages` installs it when run as root")
    root = Path(tempfile.mkdtemp(prefix="breastseg-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the package's system user, in a folder it owns
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("the postgresql package's 'postgres' system user is missing")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *cmd], cwd=root, capture_output=True, text=True, check=check, timeout=120)

    started = False
    try:
        try:
            run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "breastseg", "-E", "UTF8", "--no-sync")
            started = True  # from here on, stop it whatever happens (a timed-out start may still come up)
            run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
                f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=50", "start")
            run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "breastseg", database)
        except subprocess.CalledProcessError as exc:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL test server: {Path(exc.cmd[len(as_user)]).name} failed: "
                               f"{(exc.stderr or '').strip()} {log[-2000:]}") from None
        yield f"postgresql://breastseg@127.0.0.1:{port}/{database}"
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


class Server(NamedTuple):
    url: str
    pid: int


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the server and its workers), SIGKILL if it lingers."""
    def group_alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)  # reap the leader, so the group can empty
            if not group_alive():
                return


@contextlib.contextmanager
def mlflow_server(workdir: Path, backend_store_uri: str | None = None, timeout: float = 180,
                  auth_env: dict[str, str] | None = None) -> Iterator[Server]:
    """``mlflow server`` on 127.0.0.1 and a free port, started as ``make server`` starts it (``breastseg server``);
    ``auth_env``: with accounts (``--auth``), these variables (the admin's password) in its environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend = backend_store_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    cmd = [str(Path(sys.executable).parent / "breastseg"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend", backend, "--artifacts", str(workdir / "mlartifacts")]
    if auth_env is not None:
        cmd += ["--auth", "--auth-db", f"sqlite:///{workdir / 'mlflow-auth.db'}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(auth_env or {})
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({proc.returncode}): "
                                   f"{(workdir / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer {url}/health within {timeout:.0f} s")
            time.sleep(0.5)
        yield Server(url, proc.pid)
    finally:
        _stop_group(proc)
        log.close()
