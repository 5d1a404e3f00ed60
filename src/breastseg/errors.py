"""The one error type users see: a file and the reason it was refused."""
from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input. The CLI prints ``breastseg: error: <path>: <reason>`` and exits 2."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)
