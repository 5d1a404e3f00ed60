"""The team's MLflow server (``make server``), optionally with MLflow's own accounts (its basic-auth app).

Without ``--auth`` this is ``mlflow server`` as the project starts it: loopback by default, artifacts proxied into
a folder, one worker, no GenAI job consumers. With ``--auth`` the same server runs MLflow's basic-auth app:

- every request needs a user name and password (HTTP basic auth): an anonymous one is refused with 401;
- users are kept in their own database (``--auth-db``, default ``sqlite:///mlflow-auth.db`` beside
  ``mlflow.db``); the admin user is created on the first start with the password in
  ``$MLFLOW_AUTH_ADMIN_PASSWORD`` (never in a file of the project, never in git);
- the creator of an experiment or registered model manages it; every other user gets ``--default-permission``
  (``READ``: the team sees every run; ``NO_PERMISSIONS``: nothing until granted) and what ``breastseg accounts
  grant`` gives per experiment or model.

Clients (every rule, ``breastseg predict``, the MLflow UI in a browser) pass their credentials the way MLflow
reads them: ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` in the environment (or a
``~/.mlflow/credentials`` file), never params.yaml.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .errors import InputError

#: MLflow's permission names (``mlflow.server.auth.permissions``), weakest first.
PERMISSIONS = ("NO_PERMISSIONS", "READ", "USE", "EDIT", "MANAGE")
ADMIN_PASSWORD_VARIABLE = "MLFLOW_AUTH_ADMIN_PASSWORD"


def auth_config_text(database_uri: str, default_permission: str, admin_username: str) -> str:
    """The basic-auth app's ini file: where users are kept, what a user may do unless granted more, the admin's
    name. It holds no password: the admin's comes from ``$MLFLOW_AUTH_ADMIN_PASSWORD`` on the first start."""
    return (
        "# written by `breastseg server --auth` (make server AUTH=1); no password belongs here\n"
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def server_command(*, host: str, port: int, backend: str, artifacts: str, workers: int = 1,
                   auth: bool = False) -> list[str]:
    """The ``mlflow server`` command line (``--app-name basic-auth`` with ``auth``)."""
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    cmd = [mlflow, "server", "--host", host, "--port", str(port), "--backend-store-uri", backend,
           "--artifacts-destination", artifacts, "--workers", str(workers)]
    return [*cmd, "--app-name", "basic-auth"] if auth else cmd


def server_environment(*, auth: bool, auth_db: str, auth_config: Path, default_permission: str,
                       admin_username: str, jobs: bool, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment; with ``auth`` the ini file is written (only when it changed) and the admin's
    password is checked for: a user store that does not exist yet cannot be created without it."""
    env = dict(os.environ if environ is None else environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true" if jobs else "false"
    if not auth:
        return env
    if default_permission not in PERMISSIONS:
        raise InputError(None, f"--default-permission {default_permission!r}: one of {', '.join(PERMISSIONS)}")
    users = _sqlite_file(auth_db)
    if (users is None or not users.exists()) and not env.get(ADMIN_PASSWORD_VARIABLE):
        raise InputError(users or auth_db, f"no user store yet: set {ADMIN_PASSWORD_VARIABLE} to the admin's "
                                           "password for the first start (an environment variable, never a file "
                                           "in the project)")
    from .io import atomic_path

    text = auth_config_text(auth_db, default_permission, admin_username)
    auth_config = Path(auth_config)
    if not auth_config.exists() or auth_config.read_text() != text:
        auth_config.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(auth_config) as tmp:
            tmp.write_text(text)
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config.resolve())
    if not env.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):  # CSRF protection: one key for all workers and restarts
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _secret_key(auth_config.parent / "flask_secret_key")
    return env


def _secret_key(path: Path) -> str:
    """The server's CSRF key: made once (random), kept readable by its owner only beside the ini file (not in
    git: ``.mlflow/`` is ignored); ``$MLFLOW_FLASK_SERVER_SECRET_KEY`` wins."""
    import secrets

    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def serve(args: Any) -> None:
    """``breastseg server``: replace this process by ``mlflow server`` (so that signals reach it directly)."""
    env = server_environment(auth=args.auth, auth_db=args.auth_db, auth_config=Path(args.auth_config),
                             default_permission=args.default_permission, admin_username=args.admin_username,
                             jobs=args.jobs)
    cmd = server_command(host=args.host, port=args.port, backend=args.backend, artifacts=args.artifacts,
                         workers=args.workers, auth=args.auth)
    if args.dry_run:
        print(" ".join(cmd))
        return
    print(f"breastseg: MLflow server on http://{args.host}:{args.port}"
          + (" with accounts (clients: MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD)" if args.auth else ""),
          file=sys.stderr, flush=True)
    if os.path.isabs(cmd[0]):
        os.execve(cmd[0], cmd, env)
    os.execvpe(cmd[0], cmd, env)


# ------------------------------------------------------------------------------------------ accounts


def _auth_client(server: str | None) -> Any:
    """MLflow's client of the basic-auth app at ``server`` (default ``$MLFLOW_TRACKING_URI``); the caller's own
    credentials (an admin's, or a manager's for grants) come from ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``."""
    url = server or os.environ.get("MLFLOW_TRACKING_URI")
    if not url or not url.startswith(("http://", "https://")):
        raise InputError(None, "no MLflow server: pass --server http://HOST:PORT or set MLFLOW_TRACKING_URI to it")
    if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        raise InputError(None, "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account that may "
                               "do this (the admin's to add users)")
    from mlflow.server.auth.client import AuthServiceClient

    return url, AuthServiceClient(url)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def add_user(server: str | None, username: str, password: str) -> None:
    """Create an account on the server (as the admin)."""
    from mlflow.exceptions import MlflowException

    url, client = _auth_client(server)
    try:
        client.create_user(username, password)
    except MlflowException as exc:
        raise InputError(url, f"cannot add user {username!r}: {_one_line(exc)}") from None


def grant(server: str | None, username: str, permission: str, *, experiment: str | None = None,
          model: str | None = None) -> str:
    """Give ``username`` ``permission`` on one experiment (by name) or registered model; returns what was granted."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if permission not in PERMISSIONS:
        raise InputError(None, f"permission {permission!r}: one of {', '.join(PERMISSIONS)}")
    if (experiment is None) == (model is None):
        raise InputError(None, "name one --experiment or one --model")
    url, client = _auth_client(server)
    try:
        if experiment is not None:
            found = mlflow.MlflowClient(tracking_uri=url).get_experiment_by_name(experiment)
            if found is None:
                raise InputError(url, f"no experiment named {experiment!r}")
            client.grant_user_permission(username, "experiment", found.experiment_id, permission)
            return f"{permission} on experiment {experiment} (id {found.experiment_id}) to {username}"
        client.grant_user_permission(username, "registered_model", model, permission)
        return f"{permission} on registered model {model} to {username}"
    except MlflowException as exc:
        raise InputError(url, f"cannot grant {permission} to {username!r}: {_one_line(exc)}") from None
