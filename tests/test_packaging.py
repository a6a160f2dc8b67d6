"""The distribution: wheel layout, package-dir mapping, and a torch-free import."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_does_not_import_torch():
    code = (
        "import sys, gymnasium as gym, reasonenv, reasonenv.agents, reasonenv.problems;"
        "import reasonenv.tokenizers, reasonenv.evaluation, reasonenv.problems.solutions;"
        "import reasonenv.shaping.advantages, reasonenv.shaping.service_factory;"
        "env = gym.make('reasonenv/MathSteps-v0'); env.reset(seed=0);"
        "bad = [m for m in ('torch', 'transformers', 'datasets', 'tokenizers') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_every_package_directory_is_listed_for_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "reasonenv").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


def test_no_top_level_agents_or_plugins_module():
    code = "import importlib.util as u, reasonenv; print(u.find_spec('agents'), u.find_spec('plugins'))"
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd="/", capture_output=True, text=True)
    assert out.stdout.split() == ["None", "None"]


def test_wheel_installs_in_fresh_venv_with_mapped_packages(tmp_path):
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = dist.glob("reasonenv-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    # Dependencies come from this interpreter's site-packages (no network needed); the wheel's
    # reasonenv must win over the editable checkout.
    deps = sysconfig.get_paths()["purelib"]
    code = (
        "import reasonenv, reasonenv.agents, reasonenv.plugins, reasonenv.grading, reasonenv.problems;"
        "print(reasonenv.__file__); print(reasonenv.agents.__file__); print(reasonenv.plugins.__file__)"
    )
    out = subprocess.run([py, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": deps, "PATH": "/usr/bin:/bin"})
    files = out.stdout.split()
    site = str(env_dir)
    assert all(f.startswith(site) for f in files), files
    assert files[1].endswith("reasonenv/agents/__init__.py")
    assert files[2].endswith("reasonenv/plugins/__init__.py")
