"""Services that shapers need, injected and shared across sub-envs: the protocols and container.

Concrete implementations: cheap deterministic ones for tests in
:mod:`reasonenv.shaping.fake_services`, model-backed ones (torch, imported lazily) in
:mod:`reasonenv.models`, the prover with its prefix cache in
:mod:`reasonenv.shaping.prover`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from reasonenv.problems.base import Problem


@dataclass(frozen=True)
class RefRequest:
    """Score ``new_ids`` under the reference model, after ``context_ids``.

    Attributes:
        key: Identifies the sequence being extended step by step (e.g. ``(slot, episode_id)``)
            so a scorer can keep a KV cache and forward each token once; None for one-shot.
        context_ids: Prompt token ids followed by the response tokens before ``new_ids``.
        new_ids: The tokens to score.
    """

    key: Hashable | None
    context_ids: tuple[int, ...]
    new_ids: tuple[int, ...]


@runtime_checkable
class RefLogprobScorer(Protocol):
    """log pi_ref of tokens. Contract: one forward over each token once per sequence (O(L))."""

    def logprobs(self, requests: Sequence[RefRequest]) -> list[np.ndarray]:
        """For each request, ``log pi_ref(new_ids[j] | context_ids + new_ids[:j])``, shape (n_new,)."""
        ...

    def release(self, key: Hashable) -> None:
        """Drop any cache kept for ``key`` (the episode ended)."""
        ...


@runtime_checkable
class PRMScorer(Protocol):
    """A process reward model: per step, quantiles of P(prefix leads to a correct answer)."""

    quantiles: tuple[float, ...]  # e.g. (0.1, 0.5, 0.9); (0.5,) for a point-estimate PRM

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """For each ``(question, steps)``, an array of shape ``(len(steps), len(quantiles))`` in [0, 1].

        Must be causal: the scores of step k depend only on the question and steps[:k+1].
        """
        ...


@runtime_checkable
class ContinuationSampler(Protocol):
    """Samples full continuations of text prefixes (the prover's base policy)."""

    def sample(self, prompts: Sequence[str], n: int, *, seed: int) -> list[list[str]]:
        """For each prompt, ``n`` continuation texts; deterministic given ``seed``."""
        ...


@dataclass(frozen=True)
class ProverRequest:
    """Estimate Q^mu after ``prefix``: P(the prover, continuing from here, reaches the answer).

    Attributes:
        problem: The problem (its ``answer`` grades the continuations).
        prompt: The prompt text the policy saw.
        prefix: Response text so far (``""`` = the bare prompt, before step 1).
    """

    problem: Problem
    prompt: str
    prefix: str


@runtime_checkable
class ProverService(Protocol):
    """Q-value estimates for prefixes (PAV). Monte-Carlo Best-of-K or a learned value head."""

    def q_values(self, requests: Sequence[ProverRequest], *, K: int, m: int) -> list[float]:
        """Q^{BoK}(prefix) in [0, 1] per request; ``m`` continuations per prefix where sampled.

        Must be deterministic per (prompt, prefix) so step-by-step and whole-response scoring
        agree; implementations cache by prefix.
        """
        ...


class SharedService:
    """Base of the services a run's envs share (models, caches, worker processes): a deep copy
    returns the object itself.

    gymnasium deep-copies an env's spec, its kwargs included, every time ``spec`` is read through
    a wrapper (the group env reads it once at start-up). Without this, each read copied the
    reference model, the PRM or the prover's model: two extra copies of the weights per group
    env, 1 GB for SmolLM2-135M in fp32.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedService:
        return self


@dataclass
class Services:
    """The services one env (or one group env, shared by all sub-envs) offers its shapers.

    Attributes:
        ref_logprobs: Reference-model log-prob scorer (PRL).
        prm: Process reward model (PROGRS).
        prover: Q-value estimator for prefixes (PAV), e.g. the Monte-Carlo Best-of-K
            :class:`~reasonenv.shaping.prover.MCProver` with its prefix cache.
        grader: ``grade_batch``-like callable: ``[(response, reference)] -> [Verdict]``.
    """

    ref_logprobs: RefLogprobScorer | None = None
    prm: PRMScorer | None = None
    prover: ProverService | None = None
    grader: Callable[..., list[Any]] | None = None

    def require(self, shaper: str, names: Sequence[str]) -> None:
        """Raise ``ValueError`` naming ``shaper`` and each missing service, with how to provide it."""
        missing = [n for n in names if n != "grader" and getattr(self, n, None) is None]
        if missing:
            hints = {
                "ref_logprobs": 'services={"ref_model": "<model name or path>"} (or a RefLogprobScorer)',
                "prm": 'services={"prm": "heuristic" | {"model": "<path>"}} (or a PRMScorer)',
                "prover": 'services={"prover": {"model": "<name or path>", "m": 20}} (or a Prover)',
            }
            raise ValueError(
                f"shaper {shaper!r} needs service(s) {missing}; provide "
                + "; ".join(f"{n} via {hints[n]}" for n in missing)
            )
