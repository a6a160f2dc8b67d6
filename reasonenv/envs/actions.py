"""Validation of step actions: a str, or a mapping with text and optional token ids/log-probs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ACTION_KEYS = ("text", "token_ids", "logprobs", "eos")


@dataclass(frozen=True)
class StepAction:
    """A validated step action.

    Attributes:
        text: The step's decoded text.
        token_ids: The policy's sampled token ids for this step, if it gave them.
        logprobs: log pi_old of each sampled token (same length as ``token_ids``), if given.
        eos: The policy ended the response (emitted its end-of-sequence token) after this step.
    """

    text: str
    token_ids: tuple[int, ...] | None = None
    logprobs: tuple[float, ...] | None = None
    eos: bool = False


def _check_text(text: str, field: str) -> None:
    """Reject lone surrogates (not text: no tokenizer or file can hold them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{field} holds a lone surrogate {text[e.start]!r} at index {e.start}; steps must be valid text"
        ) from None


def check_token_text(tokenizer: Any, previous_ids: Sequence[int], token_ids: Sequence[int], text: str) -> None:
    """Raise ``ValueError`` when ``token_ids`` (following ``previous_ids``) do not decode to
    ``text``; a step that ends or starts inside a multi-byte character is not judged.

    Decoding uses a short window of the previous ids, as :class:`~reasonenv.segmentation.
    IncrementalDecoder` does, so tokenizers that merge leading spaces are handled. The usual
    case costs two ``decode`` calls per step (the window, then the window and the step); only a
    step that does not match that way is decoded again token by token before it is refused, so
    the verdict is the incremental decoder's.
    """
    window = list(previous_ids)[-6:]
    ids = list(token_ids)
    base = tokenizer.decode(window) if window else ""
    full = tokenizer.decode(window + ids)
    if full.startswith(base) and full[len(base):] == text:
        return
    from reasonenv.segmentation import IncrementalDecoder

    d = IncrementalDecoder(tokenizer).extend(window)
    start = len(d.text)
    d.extend(ids)
    derived = d.text[start:]
    if derived != text and "\ufffd" not in derived and "\ufffd" not in text:
        raise ValueError(
            f"action['token_ids'] decode to {derived[:60]!r}, not action['text'] {text[:60]!r}; "
            "pass the ids the policy sampled for this text"
        )


def parse_action(action: Any) -> StepAction:
    """Validate a raw action and return a :class:`StepAction`.

    Raises:
        TypeError: wrong types, naming the field and the value's type.
        ValueError: unknown keys, or ``logprobs`` without or not matching ``token_ids``.
    """
    if isinstance(action, str):
        _check_text(action, "action")
        return StepAction(text=action)
    if not isinstance(action, Mapping):
        raise TypeError(
            f"action must be a str or a mapping with keys {ACTION_KEYS}, got {type(action).__name__}"
        )
    unknown = set(action) - set(ACTION_KEYS)
    if unknown:
        raise ValueError(f"unknown action key(s) {sorted(unknown)}; valid keys: {list(ACTION_KEYS)}")
    if "text" not in action:
        raise ValueError("action mapping needs a 'text' field (the step's decoded text)")
    text = action["text"]
    if not isinstance(text, str):
        raise TypeError(f"action['text'] must be a str, got {type(text).__name__}")
    _check_text(text, "action['text']")
    token_ids = action.get("token_ids")
    if token_ids is not None:
        if isinstance(token_ids, (str, bytes)) or not isinstance(token_ids, Sequence) and not hasattr(
            token_ids, "tolist"
        ):
            raise TypeError(f"action['token_ids'] must be a sequence of ints, got {type(token_ids).__name__}")
        seq = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        ok = [isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in seq]
        if not all(ok):
            bad = seq[ok.index(False)]
            raise TypeError(
                f"action['token_ids'] must hold non-negative ints, found {bad!r} "
                f"({type(bad).__name__}) at index {ok.index(False)}"
            )
        token_ids = tuple(seq)
    logprobs = action.get("logprobs")
    if logprobs is not None:
        if token_ids is None:
            raise ValueError("action['logprobs'] given without action['token_ids']")
        seq = logprobs.tolist() if hasattr(logprobs, "tolist") else list(logprobs)
        if len(seq) != len(token_ids):
            raise ValueError(
                f"action['logprobs'] has {len(seq)} entries but action['token_ids'] has {len(token_ids)}"
            )
        for i, x in enumerate(seq):
            if isinstance(x, (bool, str, bytes)) or not isinstance(x, (int, float)):
                raise TypeError(
                    f"action['logprobs'] must hold numbers, found {x!r} ({type(x).__name__}) at index {i}"
                )
        vals = tuple(float(x) for x in seq)
        if any(math.isnan(v) or v > 1e-6 for v in vals):
            bad = next(v for v in vals if math.isnan(v) or v > 1e-6)
            raise ValueError(f"action['logprobs'] must be log-probabilities (<= 0), found {bad!r}")
        logprobs = vals
    eos = action.get("eos", False)
    if not isinstance(eos, bool):
        raise TypeError(f"action['eos'] must be a bool, got {type(eos).__name__}")
    return StepAction(text=text, token_ids=token_ids, logprobs=logprobs, eos=eos)
