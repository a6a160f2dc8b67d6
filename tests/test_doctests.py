"""Every docstring example in the package runs (they are part of the documentation).

One walk over all modules of reasonenv, reasonenv.agents and reasonenv.plugins, so a new module's
examples are covered without a list to keep up to date.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

# The vLLM worker imports vllm (present only in its own venv); its protocol is tested elsewhere.
SKIP = {"reasonenv.agents.vllm_worker", "reasonenv.__main__"}


def modules() -> list[str]:
    names = ["reasonenv", "reasonenv.agents", "reasonenv.plugins"]
    for pkg in list(names):
        mod = importlib.import_module(pkg)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, pkg + ".")]
    return sorted(set(names) - SKIP)


def test_the_walk_finds_every_package():
    found = modules()
    for expected in ("reasonenv.grading.extract", "reasonenv.problems.factory",
                     "reasonenv.shaping.registry", "reasonenv.envs.math_tokens",
                     "reasonenv.agents.config", "reasonenv.plugins.prl"):
        assert expected in found


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL)
    assert result.failed == 0
