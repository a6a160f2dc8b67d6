"""The reward pipeline: the configured shapers, their weights, and the services they share.

One pipeline serves one env, or every sub-env of a group env (so services such as a reference
model are loaded once and shaper work is batched across sub-envs). The env calls it in four
places, always for a batch:

* :meth:`RewardPipeline.ref_logprobs` for the steps just taken, when a configured shaper needs
  ``ref_logprobs`` (one scorer call; the values reach every shaper through the contexts);
* :meth:`RewardPipeline.step_terms` for the same steps;
* :meth:`RewardPipeline.finish_episodes` for the episodes that end in that batch (episode-end
  and token terms, then per-episode caches are released);
* :meth:`RewardPipeline.group_end` when all members of a problem group are done.

Nothing here mutates an episode: the env applies the results only once every call succeeded.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from reasonenv.shaping.base import EpisodeRecord, Shaper, StepContext
from reasonenv.shaping.protocols import RefRequest, Services, SharedService


class ShaperError(RuntimeError):
    """A shaper raised or returned something invalid; the message names the shaper and hook."""


@dataclass
class ShaperSlot:
    """A configured shaper: the instance, its weight, and the spec it came from."""

    shaper: Shaper
    weight: float
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return self.shaper.name

    def contributions(self) -> dict[str, str]:
        """``{hook: enters}`` of the shaper (see :meth:`Shaper.contributions`)."""
        return self.shaper.contributions()


class RewardPipeline(SharedService):
    """Applies the configured shapers at the step, token, episode-end and group-end points.

    Terms are reported weighted (``weight * term``), under the shaper's name; the env reward of
    a step is the sum of its step and episode-end terms. ``outcome`` is always present: add
    ``{"name": "outcome", "weight": 0}`` to silence it, or give it options such as
    ``{"name": "outcome", "format_penalty": 0.1}``.

    Args:
        shapers: Specs accepted by :func:`reasonenv.shaping.make_shaper`: a name, a
            dict ``{"name", "weight", **kwargs}``, or a :class:`Shaper` instance.
        services: A :class:`Services` or a dict for
            :func:`reasonenv.shaping.service_factory.build_services`.

    Example:
        >>> pipe = RewardPipeline([{"name": "outcome"}])
        >>> pipe.names
        ['outcome']
    """

    def __init__(self, shapers: Sequence[Any] | None = None, services: Any = None) -> None:
        from reasonenv.shaping.service_factory import build_services
        from reasonenv.shaping.shaper_factory import make_shaper

        self.services: Services = build_services(services)
        specs = list(shapers or [])
        if not any(_spec_name(s) == "outcome" for s in specs):
            specs.insert(0, {"name": "outcome"})
        self.slots: list[ShaperSlot] = []
        seen: set[str] = set()
        for spec in specs:
            shaper, weight = make_shaper(spec, self.services)
            if shaper.name in seen:
                raise ValueError(f"shaper {shaper.name!r} is configured twice in shapers={specs!r}")
            seen.add(shaper.name)
            raw = dict(spec) if isinstance(spec, dict) else {"name": shaper.name}
            self.slots.append(ShaperSlot(shaper, weight, raw))

    @property
    def names(self) -> list[str]:
        """Configured shaper names, in order."""
        return [s.name for s in self.slots]

    def get(self, name: str) -> Shaper:
        """The configured shaper called ``name``."""
        for s in self.slots:
            if s.name == name:
                return s.shaper
        raise KeyError(f"no shaper {name!r} configured; configured: {self.names}")

    def contributions(self) -> dict[str, dict[str, str]]:
        """Per shaper, ``{hook: enters}`` (what the advantage composition applies)."""
        return {s.name: s.contributions() for s in self.slots}

    def enters(self) -> dict[str, str]:
        """Per shaper, where its terms enter; ``"mixed"`` when its hooks differ."""
        out = {}
        for s in self.slots:
            values = set(s.contributions().values())
            out[s.name] = values.pop() if len(values) == 1 else "mixed"
        return out

    def preferred_split(self) -> tuple[str | None, bool]:
        """The segmentation a shaper asks for (its ``Config.split``) and whether the user set it."""
        for s in self.slots:
            split = getattr(s.shaper.config, "split", None)
            if split:
                return split, "split" in s.spec
        return None, False

    @property
    def needs_ref_logprobs(self) -> bool:
        """Whether a configured shaper needs reference log-probs (so every step gets them)."""
        return any("ref_logprobs" in s.shaper.services for s in self.slots)

    # ------------------------------------------------------------------ hook points
    def ref_logprobs(self, contexts: Sequence[StepContext]) -> list[tuple[float, ...] | None]:
        """log pi_ref of each just-taken step's tokens, one batched scorer call.

        Returns a list of Nones when no configured shaper needs them. A step without token ids
        (or after a step without them) gets None; the shaper that needs them reports it.

        Raises:
            ValueError: The env has no tokenizer (no prompt token ids to condition on).
        """
        if not contexts or not self.needs_ref_logprobs:
            return [None] * len(contexts)
        scorer = self.services.ref_logprobs
        if scorer is None:
            need = [s.name for s in self.slots if "ref_logprobs" in s.shaper.services]
            self.services.require(need[0], ("ref_logprobs",))
        requests: list[RefRequest] = []
        index: list[int] = []
        for i, ctx in enumerate(contexts):
            if ctx.prompt_token_ids is None:
                need = [s.name for s in self.slots if "ref_logprobs" in s.shaper.services]
                raise ValueError(
                    f"shaper(s) {need} need reference log-probs: the env needs a tokenizer "
                    "(StepContext.prompt_token_ids is None)"
                )
            if ctx.token_ids is None or any(ids is None for ids in ctx.step_token_ids[:-1]):
                continue
            context = list(ctx.prompt_token_ids)
            for ids in ctx.step_token_ids[:-1]:
                context.extend(ids)  # type: ignore[arg-type]
            requests.append(RefRequest(key=(ctx.slot, ctx.episode_id), context_ids=tuple(context),
                                       new_ids=tuple(ctx.token_ids)))
            index.append(i)
        out: list[tuple[float, ...] | None] = [None] * len(contexts)
        if not requests:
            return out
        got = scorer.logprobs(requests)
        if len(got) != len(requests):
            raise ValueError(f"ref scorer returned {len(got)} arrays for {len(requests)} requests")
        for i, req, lp in zip(index, requests, got):
            vals = tuple(float(x) for x in lp)
            if len(vals) != len(req.new_ids):
                raise ValueError(
                    f"ref scorer gave {len(vals)} log-probs for {len(req.new_ids)} tokens "
                    f"(slot {contexts[i].slot}, step {contexts[i].step_index})"
                )
            out[i] = vals
        return out

    def step_terms(self, contexts: Sequence[StepContext]) -> list[dict[str, float]]:
        """Causal per-step terms for a batch of just-taken steps (one per sub-env).

        Returns:
            For each context, ``{shaper name: weighted term}`` for every configured shaper
            (0.0 for shapers without a step hook).
        """
        out: list[dict[str, float]] = [{} for _ in contexts]
        for slot in self.slots:
            vals = [0.0] * len(contexts)
            if contexts and "step" in type(slot.shaper).hook_points():
                vals = self._call(slot.shaper, "step_terms", contexts)
            for i, v in enumerate(vals):
                out[i][slot.name] = _weighted(slot.weight, v)
        return out

    def finish_episodes(self, records: Sequence[EpisodeRecord]) -> list[EpisodeRecord]:
        """Run the episode-end and token hooks on finished episodes, then release per-episode
        service caches.

        Returns:
            The records with ``episode_terms`` (shapers with an episode hook) and
            ``token_terms`` (shapers with a token hook) filled in, weighted.
        """
        episode: list[dict[str, float]] = [{} for _ in records]
        token: list[dict[str, tuple[float, ...]]] = [{} for _ in records]
        for slot in self.slots:
            hooks = type(slot.shaper).hook_points()
            if records and "episode" in hooks:
                for i, v in enumerate(self._call(slot.shaper, "episode_end", records)):
                    episode[i][slot.name] = _weighted(slot.weight, v)
            if records and "token" in hooks:
                for i, arr in enumerate(self._call_tokens(slot.shaper, records)):
                    token[i][slot.name] = tuple(_weighted(slot.weight, v) for v in arr)
        for rec in records:
            self.release(rec.slot, rec.episode_id)
        return [replace(r, episode_terms=e, token_terms=t) for r, e, t in zip(records, episode, token)]

    def group_end(self, group: Sequence[EpisodeRecord]) -> dict[str, list[float]]:
        """Group-end terms of every shaper that has them: ``{name: [weighted term per member]}``."""
        terms: dict[str, list[float]] = {}
        for slot in self.slots:
            if "group" in type(slot.shaper).hook_points():
                vals = self._call(slot.shaper, "group_end", group)
                terms[slot.name] = [_weighted(slot.weight, v) for v in vals]
        return terms

    def reset_slot(self, slot: int) -> None:
        """Tell every shaper that ``slot`` starts a new episode."""
        for s in self.slots:
            s.shaper.reset_slot(slot)

    def release(self, slot: int, episode_id: int) -> None:
        """Free per-episode service caches (e.g. the reference model's KV cache)."""
        ref = self.services.ref_logprobs
        if ref is not None:
            ref.release((slot, episode_id))

    def stats(self) -> dict[str, float]:
        """Every shaper's diagnostics, keyed ``"<shaper>/<stat>"``, and those of every service
        that reports some (the MC prover's sample and cache counts), keyed ``"<service>/<stat>"``."""
        out = {f"{s.name}/{k}": v for s in self.slots for k, v in s.shaper.stats().items()}
        for name in ("ref_logprobs", "prm", "prover"):
            stats = getattr(getattr(self.services, name, None), "stats", None)
            if callable(stats):
                got = stats()
                if isinstance(got, dict):
                    out.update({f"{name}/{k}": float(v) for k, v in got.items()
                                if isinstance(v, (int, float))})
        return out

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _invoke(shaper: Shaper, hook: str, batch: Sequence[Any]) -> Any:
        budget = getattr(shaper, "time_budget", None)
        t0 = time.perf_counter()
        try:
            got = getattr(shaper, hook)(batch)
        except Exception as e:  # propagate with the shaper's name attached
            raise ShaperError(f"shaper {shaper.name!r} failed in {hook}: {type(e).__name__}: {e}") from e
        spent = time.perf_counter() - t0
        if budget is not None and spent > budget:
            raise ShaperError(
                f"shaper {shaper.name!r}.{hook} took {spent:.3g} s for a batch of {len(batch)}, "
                f"over its time_budget={budget!r} s"
            )
        if got is None or len(got) != len(batch):
            raise ShaperError(
                f"shaper {shaper.name!r}.{hook} returned {None if got is None else len(got)} "
                f"terms for a batch of {len(batch)}"
            )
        return got

    @classmethod
    def _call(cls, shaper: Shaper, hook: str, batch: Sequence[Any]) -> list[float]:
        return [_term(shaper, hook, v) for v in cls._invoke(shaper, hook, batch)]

    @classmethod
    def _call_tokens(cls, shaper: Shaper, records: Sequence[EpisodeRecord]) -> list[list[float]]:
        out = []
        for rec, arr in zip(records, cls._invoke(shaper, "token_terms", records)):
            n = sum(rec.step_lengths)
            try:
                vals = list(arr)
            except TypeError:
                raise ShaperError(
                    f"shaper {shaper.name!r}.token_terms returned {arr!r} for an episode; "
                    f"expected {n} numbers (one per response token)"
                ) from None
            if len(vals) != n:
                raise ShaperError(
                    f"shaper {shaper.name!r}.token_terms returned {len(vals)} terms for an "
                    f"episode of {n} response tokens"
                )
            out.append([_term(shaper, "token_terms", v) for v in vals])
        return out


def _term(shaper: Shaper, hook: str, v: Any) -> float:
    """A shaper's returned value as a float: a real number (not a str, not a bool), finite."""
    if isinstance(v, (bool, str, bytes)) or not isinstance(v, numbers.Real):
        if not (hasattr(v, "dtype") and getattr(v, "shape", None) == () and v.dtype.kind in "iuf"):
            raise ShaperError(
                f"shaper {shaper.name!r}.{hook} returned {v!r} ({type(v).__name__}); terms must be "
                "real numbers"
            )
    f = float(v)
    if not math.isfinite(f):
        raise ShaperError(f"shaper {shaper.name!r}.{hook} returned a non-finite term: {f!r}")
    return f


def _weighted(weight: float, value: float) -> float:
    return weight * value if weight != 0 else 0.0


def _spec_name(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return spec.get("name")
    return getattr(spec, "name", None)
