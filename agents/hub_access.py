"""Is the Hugging Face hub reachable? Cheap answers before transformers or datasets start their
retry loops (tens of seconds per name when offline).

Offline means one of the libraries' own switches is set (``HF_HUB_OFFLINE``,
``TRANSFORMERS_OFFLINE`` for models, ``HF_DATASETS_OFFLINE`` for datasets) or a TCP connect to
the hub (``HF_ENDPOINT``, default ``https://huggingface.co``; or the HTTPS proxy when one is set)
fails within :data:`PROBE_TIMEOUT` seconds. The probe runs at most once per process.

Example:
    >>> looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"), looks_like_hub_id("bogus")
    (True, False)
    >>> looks_like_hub_id("/abs/path"), looks_like_hub_id("a/b/c")
    (False, False)
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

PROBE_TIMEOUT = 1.5  # seconds: DNS + TCP connect to the hub (or the proxy)
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # what huggingface_hub counts as "set"
MODEL_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DATASET_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
# huggingface_hub's repo id rule, with the "org/" part required (bare legacy names such as
# "gpt2" redirect to "openai-community/gpt2"; a bare word is far more often a typo or a path).
_HUB_ID = re.compile(r"^[\w][\w.-]*/[\w][\w.-]*$")

_probe_result: str | None | bool = False  # False: not probed yet; None: reachable; str: why not


def looks_like_hub_id(name: str) -> bool:
    """True when ``name`` has the form of a hub repo id ``org/name`` (nothing is looked up)."""
    return (bool(_HUB_ID.match(name)) and len(name) <= 96 and "--" not in name
            and ".." not in name and not name.endswith(".") and not name.startswith("."))


def _switch_set(names: tuple[str, ...]) -> str | None:
    for var in names:
        if os.environ.get(var, "").strip().upper() in TRUE_VALUES:
            return f"{var}={os.environ[var]} is set"
    return None


def _probe_target() -> tuple[str, int]:
    proxy = next((os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(v)), None)
    url = urlsplit(proxy if proxy else os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if not url.hostname:  # "proxy:3128" without a scheme
        url = urlsplit(f"http://{proxy or url.path}")
    default = 443 if url.scheme == "https" else 80
    return url.hostname or "huggingface.co", url.port or default


def probe_hub(timeout: float = PROBE_TIMEOUT) -> str | None:
    """Try a TCP connection to the hub (or the HTTPS proxy); None when it works, else why not.

    DNS lookups have no timeout of their own, so the attempt runs in a daemon thread and the
    caller waits at most ``timeout`` seconds.
    """
    host, port = _probe_target()
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"{host}:{port} cannot be reached ({e.strerror or type(e).__name__})")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {timeout:g} s"


def hub_offline(kind: str = "model") -> str | None:
    """Why the hub cannot be used for a ``kind`` ("model" or "dataset") download, or None.

    The environment switches are read every call; the network probe runs once per process.
    """
    reason = _switch_set(MODEL_SWITCHES if kind == "model" else DATASET_SWITCHES)
    if reason:
        return reason
    global _probe_result
    if _probe_result is False:
        _probe_result = probe_hub()
    return _probe_result  # type: ignore[return-value]


def probed_unreachable() -> bool:
    """True when this process already probed the hub and could not reach it."""
    return isinstance(_probe_result, str)


def _hf_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    default = Path(xdg) / "huggingface" if xdg else Path.home() / ".cache" / "huggingface"
    return Path(os.environ.get("HF_HOME") or default)


def hub_cached(repo_id: str, kind: str = "model", extra_dirs: tuple[str, ...] = ()) -> bool:
    """Whether a download of ``repo_id`` is in the local caches (so offline loading can work).

    Looks for the hub cache's ``models--org--name`` / ``datasets--org--name`` snapshot folders
    and the ``datasets`` library's ``org___name`` folders (also under ``extra_dirs``).
    """
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
               or _hf_home() / "hub")
    folder = f"{kind}s--{repo_id.replace('/', '--')}"
    if any((hub / folder / "snapshots").glob("*")):
        return True
    if kind != "dataset":
        return False
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets")
    name = repo_id.replace("/", "___")
    return any((Path(d) / n).is_dir() for d in (datasets_cache, *extra_dirs)
               for n in (name, name.lower()))
