"""Shared fixtures for reasonenv.problems tests: offline mode, a private cache, no sockets."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before anything imports `datasets`/`huggingface_hub`, which read these at import time.
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
_CACHE = tempfile.mkdtemp(prefix="reasonenv-datasets-cache-")
os.environ.setdefault("REASONENV_DATASETS_CACHE", _CACHE)
atexit.register(shutil.rmtree, _CACHE, True)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(autouse=True, scope="module")
def _no_network() -> Iterator[None]:
    """Fail loudly if a test in this directory opens a non-local socket connection.

    Module-scoped so the guard is removed before tests outside ``tests/problems`` run.
    """
    original = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        if self.family == getattr(socket, "AF_UNIX", None):
            return original(self, address)
        raise RuntimeError(f"network access attempted in tests: {address!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded)
        yield


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Directory holding the small JSONL fixtures (hub dataset schemas)."""
    return FIXTURES
