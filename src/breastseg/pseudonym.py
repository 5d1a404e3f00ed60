"""Pseudonyms: patients are named by a keyed hash, never by a raw identifier.

The key lives outside git (default ``~/.config/breastseg/pseudonym.key``, or the file named by
``BREASTSEG_PSEUDONYM_KEY_FILE``). It is created on first use. Keep it: a new key renames every patient.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

DEFAULT_KEY_FILE = Path("~/.config/breastseg/pseudonym.key")


def key_file(path: str | Path | None = None) -> Path:
    """The key file in force: the argument, else $BREASTSEG_PSEUDONYM_KEY_FILE, else the default."""
    chosen = path or os.environ.get("BREASTSEG_PSEUDONYM_KEY_FILE") or DEFAULT_KEY_FILE
    return Path(chosen).expanduser()


def load_key(path: str | Path | None = None) -> bytes:
    """Read the key, creating a random one (mode 0600) if the file does not exist yet."""
    p = key_file(path)
    if not p.exists():
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
        from .errors import InputError

        raise InputError(p, "pseudonym key is shorter than 32 characters")
    return key.encode()


def pseudonym(identifier: str, key: bytes, prefix: str = "P") -> str:
    """A stable, non-reversible patient name such as ``P3fa9c1d2e07b``."""
    digest = hmac.new(key, identifier.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:12]}"
