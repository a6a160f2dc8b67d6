"""The reward pipeline: the configured shapers, their weights, and the services they share.

One pipeline serves one env, or every sub-env of a group env (so services such as a reference
model are loaded once and shaper work is batched across sub-envs). The env calls it in three
places: :meth:`RewardPipeline.step` for a batch of just-taken steps (episode-end terms of the
episodes that finish in that batch are added to their last step), and
:meth:`RewardPipeline.group_end` when all members of a problem group are done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reasonenv.shaping.base import EpisodeRecord, Shaper, StepContext
from reasonenv.shaping.protocols import Services


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


class RewardPipeline:
    """Applies the configured shapers at the step, episode-end and group-end points.

    Terms are reported weighted (``weight * term``), under the shaper's name; the env reward of
    a step is the sum of its step and episode-end terms. ``outcome`` is always present: add
    ``{"name": "outcome", "weight": 0}`` to silence it, or give it options such as
    ``{"name": "outcome", "format_penalty": 0.1}``.

    Args:
        shapers: Specs accepted by :func:`reasonenv.shaping.make_shaper`: a name, a
            dict ``{"name", "weight", **kwargs}``, or a :class:`Shaper` instance.
        services: A :class:`Services` or a dict for :func:`reasonenv.shaping.service_factory.build_services`.

    Example:
        >>> pipe = RewardPipeline([{"name": "outcome"}])
        >>> pipe.names
        ['outcome']
    """

    def __init__(self, shapers: Sequence[Any] | None = None, services: Any = None) -> None:
        from reasonenv.shaping import make_shaper
        from reasonenv.shaping.service_factory import build_services

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

    def enters(self) -> dict[str, str]:
        """Where each shaper's term enters policy optimisation (``"reward"``/``"advantage"``)."""
        return {s.name: getattr(s.shaper, "enters", type(s.shaper).enters) for s in self.slots}

    def preferred_split(self) -> tuple[str | None, bool]:
        """The segmentation a shaper asks for (its ``Config.split``) and whether the user set it."""
        for s in self.slots:
            split = getattr(s.shaper.config, "split", None)
            if split:
                return split, "split" in s.spec
        return None, False

    # ------------------------------------------------------------------ hook points
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
                out[i][slot.name] = slot.weight * v if slot.weight != 0 else 0.0
        return out

    def episode_end(self, records: Sequence[EpisodeRecord]) -> list[dict[str, float]]:
        """Episode-end terms for finished episodes (added to their last step), then release
        per-episode service caches.

        Returns:
            For each record, ``{shaper name: weighted term}`` for shapers with an episode hook.
        """
        out: list[dict[str, float]] = [{} for _ in records]
        for slot in self.slots:
            if records and "episode" in type(slot.shaper).hook_points():
                vals = self._call(slot.shaper, "episode_end", records)
                for i, v in enumerate(vals):
                    out[i][slot.name] = slot.weight * v if slot.weight != 0 else 0.0
        for rec in records:
            self.release(rec.slot, rec.episode_id)
        return out

    def group_end(self, group: Sequence[EpisodeRecord]) -> dict[str, list[float]]:
        """Group-end terms of every shaper that has them: ``{name: [weighted term per member]}``."""
        terms: dict[str, list[float]] = {}
        for slot in self.slots:
            if "group" in type(slot.shaper).hook_points():
                vals = self._call(slot.shaper, "group_end", group)
                terms[slot.name] = [slot.weight * v if slot.weight != 0 else 0.0 for v in vals]
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
        """Every shaper's diagnostics, keyed ``"<shaper>/<stat>"``."""
        return {f"{s.name}/{k}": v for s in self.slots for k, v in s.shaper.stats().items()}

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _call(shaper: Shaper, hook: str, batch: Sequence[Any]) -> list[float]:
        try:
            got = getattr(shaper, hook)(batch)
        except Exception as e:  # propagate with the shaper's name attached
            raise ShaperError(f"shaper {shaper.name!r} failed in {hook}: {type(e).__name__}: {e}") from e
        if got is None or len(got) != len(batch):
            raise ShaperError(
                f"shaper {shaper.name!r}.{hook} returned {None if got is None else len(got)} "
                f"terms for a batch of {len(batch)}"
            )
        vals = []
        for v in got:
            try:
                f = float(v)
            except (TypeError, ValueError):
                raise ShaperError(f"shaper {shaper.name!r}.{hook} returned a non-number: {v!r}") from None
            if not math.isfinite(f):
                raise ShaperError(f"shaper {shaper.name!r}.{hook} returned a non-finite term: {f!r}")
            vals.append(f)
        return vals


def _spec_name(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, dict):
        return spec.get("name")
    return getattr(spec, "name", None)
