"""Pseudonyms: patients are named by a keyed hash, never by a raw identifier.

Real cohorts: the key lives outside git, in the file named by ``$BREASTSEG_PSEUDONYM_KEY_FILE``, else by
``cohort.pseudonym_key_file``, else ``~/.config/breastseg/pseudonym.key`` (the environment wins, as
``MLFLOW_TRACKING_URI`` does, so a test or a CI job can never read or create a user's key). It is created on
first use, when no split ledger exists yet; where a ledger exists, a missing key is refused, never replaced.
A team shares the key file the way it shares a DVC remote's credentials.

The demo cohort (``cohort.name: demo``) is synthetic and carries no identity: its patients are named with
:data:`DEMO_KEY`, a fixed, public key, so every machine draws the same demo split. The demo key is applied in
code only when the cohort is named ``demo``, and a key file holding it is refused for any other cohort.

A published, anonymous cohort (BUSI, OASBUD: ``cohort.public: true``) has no identity to protect either: its
patients are named with :func:`public_key` of its name, so every machine that downloads it draws the same split
and its ledger can be committed. The setting is the user's statement that the cohort is public; a key file
holding a cohort's public key is refused for a cohort not marked so.

Each ledger records the key's fingerprint (:func:`key_fingerprint`: a keyed hash of a fixed string, never the
key), so a run with another key is refused instead of silently renaming and re-splitting every patient.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

DEFAULT_KEY_FILE = Path("~/.config/breastseg/pseudonym.key")
ENV_KEY_FILE = "BREASTSEG_PSEUDONYM_KEY_FILE"
DEMO_COHORT = "demo"
# Public on purpose: the demo's phantoms have no identity to protect, and one key everywhere gives one split.
DEMO_KEY = b"breastseg public demo key: synthetic phantoms only, never real patients"
_FINGERPRINT_MESSAGE = b"breastseg pseudonym key fingerprint v1"


def key_file(path: str | Path | None = None) -> Path:
    """The key file in force: $BREASTSEG_PSEUDONYM_KEY_FILE, else the argument, else the default."""
    chosen = os.environ.get(ENV_KEY_FILE) or path or DEFAULT_KEY_FILE
    return Path(chosen).expanduser()


def key_fingerprint(key: bytes) -> str:
    """A short keyed hash of a fixed string: names the key in a ledger without revealing it."""
    return hmac.new(key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]


DEMO_FINGERPRINT = key_fingerprint(DEMO_KEY)


def load_key(path: str | Path | None = None, *, create: bool = True) -> bytes:
    """Read the key from ``path`` (None: the file :func:`key_file` names); create a random one (mode 0600) if
    the file does not exist yet and ``create`` is set."""
    p = Path(path).expanduser() if path else key_file()
    if not p.exists():
        if not create:
            raise InputError(p, "no pseudonym key file (a split ledger exists, so a new key would rename every "
                                "patient): restore the team's key file or set $BREASTSEG_PSEUDONYM_KEY_FILE")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, p)  # first writer wins when several jobs start at once
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    key = p.read_text().strip()
    if len(key) < 32:
        raise InputError(p, "pseudonym key is shorter than 32 characters")
    return key.encode()


@dataclass(frozen=True)
class CohortKey:
    """The pseudonym key of one cohort, where it was read from, and its fingerprint."""

    key: bytes
    origin: str
    fingerprint: str


def provisional_key() -> CohortKey:
    """A random key held in memory only, for a dry run before any key file exists: the pseudonyms it shows are
    provisional, and nothing is written (the first real run creates the key file)."""
    key = secrets.token_hex(32).encode()
    return CohortKey(key, "a provisional key (dry run: the first real run creates the key file)", key_fingerprint(key))


def public_key(name: str) -> bytes:
    """The public pseudonym key of a published, anonymous cohort named ``name`` (``cohort.public: true``)."""
    return f"breastseg public cohort key: {name}: published anonymous images only, never a site's patients".encode()


def cohort_key(cohort: dict[str, Any], *, create: bool = True) -> CohortKey:
    """The key in force for ``cohort`` (the ``cohort`` block of params): the public demo key for ``demo``, the
    cohort's :func:`public_key` for a cohort marked ``public``, else the key file (see :func:`key_file`), which
    must not hold a public key."""
    name = str(cohort.get("name"))
    if name == DEMO_COHORT:
        return CohortKey(DEMO_KEY, "the built-in demo key", DEMO_FINGERPRINT)
    if cohort.get("public"):
        key = public_key(name)
        return CohortKey(key, f"the public key of cohort '{name}' (cohort.public)", key_fingerprint(key))
    path = key_file(cohort.get("pseudonym_key_file"))
    key = load_key(path, create=create)
    fingerprint = key_fingerprint(key)
    if fingerprint == DEMO_FINGERPRINT:
        raise InputError(path, f"holds the public demo key, which cohort '{name}' must never use: "
                               "give real patients a key of their own")
    if fingerprint == key_fingerprint(public_key(name)):
        raise InputError(path, f"holds the public key of cohort '{name}', which is not marked public "
                               "(cohort.public): give real patients a key of their own")
    return CohortKey(key, str(path), fingerprint)


def pseudonym(identifier: str, key: bytes, prefix: str = "P") -> str:
    """A stable, non-reversible patient name such as ``P3fa9c1d2e07b``."""
    digest = hmac.new(key, identifier.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:12]}"
