"""Shared fixtures: tiny tokenizer/model built in-process (no downloads)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_tok():
    from reasonenv.testing import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_lm(tiny_tok):
    from reasonenv.testing import tiny_model

    return tiny_model(tiny_tok)


@pytest.fixture(scope="session")
def _example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/reasonenv-shaper-example pip-installed (once) into a --target folder."""
    pytest.importorskip("setuptools")  # --no-build-isolation builds with this venv's setuptools
    base = tmp_path_factory.mktemp("example")
    src = base / "src"
    shutil.copytree(ROOT / "examples" / "reasonenv-shaper-example", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = base / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "--disable-pip-version-check", "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    return target


@pytest.fixture
def example_installed(_example_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example plugin distribution installed with pip and importable (sys.path) for one test."""
    monkeypatch.syspath_prepend(str(_example_site))
    yield _example_site
    for mod in [m for m in sys.modules if m.split(".")[0] == "reasonenv_shaper_example"]:
        del sys.modules[mod]


@pytest.fixture
def real_reg(monkeypatch: pytest.MonkeyPatch):
    """A fresh default shaper registry (plugins rediscovered) with the real built-in shapers."""
    from reasonenv.shaping import registry as registry_mod

    fresh = registry_mod.ShaperRegistry()
    monkeypatch.setattr(registry_mod, "_default", fresh)
    return fresh


def trainer_config_paths():
    """Every shipped trainer config: configs/**/*.yaml except eval presets (configs/eval/,
    */eval.yaml) and `reasonenv sft` configs (*/sft.yaml)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    return sorted(p for p in root.rglob("*.yaml")
                  if p.parent.name != "eval" and p.name not in ("eval.yaml", "sft.yaml"))


def fake_tiny_artifacts(folder):
    """The folders the tiny configs name (made by `make tiny-sft` and `reasonenv verifier
    train`), as stand-ins under ``folder``/runs/tiny, so pre-flight sees them on a clean checkout."""
    import json

    for name in ("sft", "prm", "pav_value"):
        d = folder / "runs" / "tiny" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text("{}")
    (folder / "runs" / "tiny" / "pav_value" / "value_head.json").write_text(json.dumps({"K": 4}))


def step_segments(env, response, problem):
    """Step ``response`` through ``env`` one segment at a time (what ``score_response`` must
    equal): ``[(reward, terminated, truncated, info), ...]`` up to the episode's end."""
    env.reset(options={"problem": problem})
    stepped = []
    segments = env.segmenter.segment_text(response)
    for s in segments:
        _, r, te, tr, info = env.step({"text": s.text, "eos": s.index == len(segments) - 1})
        stepped.append((r, te, tr, info))
        if te or tr:
            break
    return stepped
