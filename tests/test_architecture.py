"""The layout rules of the design card, checked on the source: the torch-free core never imports
reasonenv.agents or torch at module level, and no two modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"reasonenv": ROOT / "reasonenv", "reasonenv.agents": ROOT / "agents",
            "reasonenv.plugins": ROOT / "plugins"}
HEAVY = ("torch", "transformers", "vllm", "einops", "datasets")
# Where torch may be imported at module level: the torch-backed services, and test helpers.
TORCH_OK = ("reasonenv.models",)


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if pkg == "reasonenv" and parts and parts[0] in ("agents", "plugins"):
                continue
            out[".".join([pkg, *parts])] = path
    return out


def top_level_imports(path: Path, name: str) -> set[str]:
    """Modules imported when ``name`` is imported (module level, TYPE_CHECKING blocks included)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]

    def visit(stmts):
        for node in stmts:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)

    visit(tree.body)
    return found


MODULES = modules()
# A submodule always imports its parent packages first (Python does): those edges are not cycles.
GRAPH = {name: {m for m in top_level_imports(path, name)
                if m in MODULES and m != name and not name.startswith(m + ".")}
         for name, path in MODULES.items()}


def test_the_core_never_imports_agents():
    bad = {}
    for name, path in MODULES.items():
        if not name.startswith("reasonenv.") or name.startswith(("reasonenv.agents", "reasonenv.plugins")):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):  # any import, lazy ones included
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            hits = [m for m in mods if m.startswith("reasonenv.agents")]
            if hits:
                bad[name] = hits
    assert bad == {}, f"the torch-free core imports reasonenv.agents: {bad}"


def test_no_heavy_imports_at_module_level_outside_the_models_package():
    bad = {}
    for name, path in MODULES.items():
        if name.startswith(TORCH_OK) or name.startswith("reasonenv.agents"):
            continue
        heavy = sorted(m for m in top_level_imports(path, name) if m.split(".")[0] in HEAVY)
        if heavy and name != "reasonenv.shaping.advantages":
            bad[name] = heavy
    assert bad == {}, bad


def test_einops_is_the_only_heavy_import_of_the_composition():
    # einops is pure Python and numpy-backed: the composition may use it at module level.
    assert {m.split(".")[0] for m in top_level_imports(MODULES["reasonenv.shaping.advantages"],
                                                       "reasonenv.shaping.advantages")} & set(HEAVY) <= {"einops"}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(GRAPH[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := dfs(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(GRAPH):
        if n not in state and (c := dfs(n)):
            return c
    return None


def test_no_import_cycles():
    assert _cycle() is None, " -> ".join(_cycle() or [])


@pytest.mark.parametrize("pkg", sorted(PACKAGES))
def test_modules_stay_small(pkg):
    big = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()
           if n.startswith(pkg) and len(p.read_text().splitlines()) > 600}
    assert big == {}, f"modules over 600 lines: {big}"
