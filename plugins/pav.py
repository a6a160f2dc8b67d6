"""PAV: prover-progress reward (arXiv 2410.08146), see docs/shapers.md "pav".

The progress of step h under a prover mu (Best-of-K of a base policy) is
``A^mu_h = Q^mu(prefix through step h) - Q^mu(prefix before step h)``, where the prefix before
step 1 is the bare prompt (``prefix=""``). The shaper emits ``alpha * A^mu_h`` at every step; the
outcome part ``Q^pi`` of the effective signal ``Q^pi + alpha * A^mu`` comes from the ``outcome``
shaper.

At the last step the response is complete, so ``Q(prefix through the last step)`` is the verified
outcome itself (no prover call): the terms then telescope to
``sum_h alpha * A^mu_h = alpha * (outcome - Q^mu(prompt))``.

Example:
    >>> from reasonenv.shaping.protocols import Services
    >>> class Prover:  # a stand-in prover: Q = 0.1 per character of the prefix, capped at 1
    ...     def q_values(self, reqs, *, K, m):
    ...         return [min(1.0, 0.1 * len(r.prefix)) for r in reqs]
    >>> ctx = StepContext.simple("ab")
    >>> [round(x, 4) for x in PAVShaper(services=Services(prover=Prover())).step_terms([ctx])]
    [0.6]
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from reasonenv.segmentation import Segmenter
from reasonenv.shaping.base import Shaper, StepContext
from reasonenv.shaping.protocols import ProverRequest


def _key(ctx: StepContext, prefix: str) -> Hashable:
    """Dedupe key of a prover request: same problem, prompt and prefix => same Q."""
    p = ctx.problem
    return (p.id, p.question, p.answer, ctx.prompt, prefix)


class PAVShaper(Shaper):
    """Causal per-step progress ``alpha * (Q^mu(after step) - Q^mu(before step))``.

    Hook point: step. Services: ``prover`` (one batched ``q_values`` call per
    :meth:`step_terms`, identical prefixes asked once). Enters: ``"reward"``. At the last step
    ``Q(after)`` is the verified outcome (``ctx.outcome``), so the episode's terms sum to
    ``alpha * (outcome - Q(prompt))``.

    Example:
        >>> from reasonenv.shaping.protocols import Services
        >>> class Prover:
        ...     def q_values(self, reqs, *, K, m): return [0.5 for _ in reqs]
        >>> PAVShaper(PAVShaper.Config(alpha=0.5), Services(prover=Prover())).step_terms(
        ...     [StepContext.simple("step one\\n")])
        [0.0]
    """

    name = "pav"
    enters = "advantage"  # Q^pi + alpha * A^mu: the progress joins the step's advantage
    services = ("prover",)
    bounds = None  # |term| <= |alpha| (Q in [0, 1]); instances set (-|alpha|, |alpha|)

    @dataclass
    class Config:
        """PAV options (paper defaults)."""

        alpha: float = 3.0  # progress weight: 3.0 for RL (paper: 5.0 at 2B), 0.5 for search
        K: int = 4  # prover = Best-of-K of the base policy (Bo2 too weak, Bo32 too strong)
        m: int = 20  # Monte-Carlo continuations per prefix for the unbiased BoK estimate (>= K)
        split: str = "\n"  # steps are newline-delimited by default (the env uses it by default)

        def __post_init__(self) -> None:
            if self.K < 1:
                raise ValueError(f"pav: K must be >= 1, got {self.K!r}")
            if self.m < self.K:
                raise ValueError(
                    f"pav: m={self.m} continuations per prefix is fewer than K={self.K}; the "
                    "unbiased Best-of-K estimate 1 - C(m-c, K)/C(m, K) needs m >= K"
                )
            Segmenter(self.split)  # raises ValueError on an unknown split

    def __init__(self, config: Config | None = None, services: object = None) -> None:
        super().__init__(config, services)
        a = abs(float(self.config.alpha))
        self.bounds = (-a, a)  # type: ignore[misc]

    def step_terms(self, steps: Sequence[StepContext]) -> list[float]:
        """``alpha * (Q_cur - Q_prev)`` per context from one deduplicated prover call."""
        if not steps:
            return []
        for ctx in steps:
            if ctx.is_last and ctx.outcome is None:
                raise ValueError(f"shaper 'pav': last step of slot {ctx.slot} has no outcome")
        if self.svc is None:
            raise ValueError("shaper 'pav' needs service(s) ['prover']")
        self.svc.require(self.name, self.services)
        index: dict[Hashable, int] = {}
        requests: list[ProverRequest] = []

        def ask(ctx: StepContext, prefix: str) -> int:
            key = _key(ctx, prefix)
            if key not in index:
                index[key] = len(requests)
                requests.append(
                    ProverRequest(problem=ctx.problem, prompt=ctx.prompt, prefix=prefix)
                )
            return index[key]

        slots = [
            (ask(ctx, ctx.prefix), None if ctx.is_last else ask(ctx, "".join(ctx.steps)))
            for ctx in steps
        ]
        cfg = self.config
        q = self.svc.prover.q_values(requests, K=cfg.K, m=cfg.m)
        if len(q) != len(requests):
            raise ValueError(
                f"shaper 'pav': prover returned {len(q)} values for {len(requests)} prefixes"
            )
        alpha = float(cfg.alpha)
        out: list[float] = []
        for ctx, (i_prev, i_cur) in zip(steps, slots):
            q_cur = float(ctx.outcome) if i_cur is None else float(q[i_cur])  # type: ignore[arg-type]
            out.append(alpha * (q_cur - float(q[i_prev])) + 0.0)
        return out
