"""Process reward models on transformers: a "score at the step tag" PRM and PROGRS's
quantile-regression PRM (with its pinball loss, trainer and save/load).

Example:
    >>> import torch
    >>> round(float(pinball_loss(torch.tensor([[0.2, 0.5]]), torch.tensor([1.0]), (0.1, 0.5))), 3)
    0.165
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reasonenv.models.hf_utils import (
    encode_steps,
    hidden_states,
    load_model,
    pad_right,
    single_token,
)
from reasonenv.shaping.protocols import SharedService


class HFStepPRM(SharedService):
    """A PRM that scores each step at its step tag (implements ``PRMScorer``, point estimate).

    The text ``question + " " + step_1 + step_tag + step_sep + step_2 + step_tag ...`` goes
    through the model once per response (responses batched). With ``head="lm"`` (Math-Shepherd
    style checkpoints) P(step good) is the softmax over the logits of ``good_token`` and
    ``bad_token`` at the tag's last token; with ``head="token_classification"`` (2-label
    AutoModelForTokenClassification) it is the softmax probability of label 1 there. Every
    requested quantile column gets that point estimate (use ``quantiles=(0.5,)``).

    Args:
        model: A loaded model (causal LM or token classifier, matching ``head``) or a name/path.
        tokenizer: Its tokenizer (loaded from ``model`` when it is a name).
        step_tag: Text appended after each step; scores are read at its last token. For
            Math-Shepherd use ``step_tag=" ки", step_sep="\\n"`` (check the tag tokenises as the
            checkpoint expects, or pass ``step_tag_ids``).
        good_token, bad_token: Single tokens (text or id) of the LM-head verdict.
        quantiles: Quantile levels reported (all columns equal).
        head: ``"lm"`` or ``"token_classification"``.
        step_sep: Text between a tag and the next step.
        step_tag_ids: Token ids of the tag, overriding ``step_tag``'s tokenisation.
        add_bos: Prepend the tokenizer's BOS (if it has one).
        batch_size: Responses per forward.
        dtype: dtype used when loading by name.

    Example:
        >>> prm = HFStepPRM(tiny_model(tok), tok)  # doctest: +SKIP
        >>> prm.score([("What is 2+2?", ["2+2 = 4.", "\\\\boxed{4}"])])[0].shape  # doctest: +SKIP
        (2, 1)
    """

    def __init__(self, model: Any, tokenizer: Any | None = None, *, step_tag: str = "\n\n",
                 good_token: str | int = "+", bad_token: str | int = "-",
                 quantiles: Sequence[float] = (0.5,), head: str = "lm", step_sep: str = "",
                 step_tag_ids: Sequence[int] | None = None, add_bos: bool = True,
                 batch_size: int = 8, dtype: str = "float32") -> None:
        if head not in ("lm", "token_classification"):
            raise ValueError(f"head={head!r}; valid: ('lm', 'token_classification')")
        kind = "causal" if head == "lm" else "token_classification"
        self.model, self.tokenizer = load_model(model, tokenizer, kind=kind, dtype=dtype)
        self.head, self.step_sep, self.add_bos = head, step_sep, add_bos
        self.quantiles = tuple(float(q) for q in quantiles)
        self.batch_size = int(batch_size)
        self.tag_ids = list(step_tag_ids or self.tokenizer.encode(step_tag, add_special_tokens=False))
        if not self.tag_ids:
            raise ValueError(f"step_tag={step_tag!r} encodes to no tokens")
        if head == "lm":
            self._cand = [single_token(self.tokenizer, good_token, "good_token"),
                          single_token(self.tokenizer, bad_token, "bad_token")]

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """For each ``(question, steps)``, P(good) per step, shape ``(len(steps), len(quantiles))``."""
        import torch

        encs = [encode_steps(self.tokenizer, q, s, tag_ids=self.tag_ids, step_sep=self.step_sep,
                             add_bos=self.add_bos) for q, s in items]
        out = [np.zeros((0, len(self.quantiles))) for _ in items]
        todo = [i for i, (_, pos) in enumerate(encs) if pos]
        pad = self.tokenizer.pad_token_id or 0
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s: s + self.batch_size]
            ids, attn = pad_right([encs[i][0] for i in chunk], pad, self.model.device)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=attn).logits.float()  # (B, T, V|2)
            for b, i in enumerate(chunk):
                at = logits[b, encs[i][1]]  # (K, V|2)
                if self.head == "lm":
                    p = torch.softmax(at[:, self._cand], -1)[:, 0]
                else:
                    p = torch.softmax(at, -1)[:, 1]
                out[i] = np.repeat(p.double().cpu().numpy()[:, None], len(self.quantiles), 1)
        return out


def pinball_loss(pred: Any, target: Any, quantiles: Sequence[float]) -> Any:
    """Mean quantile (pinball) loss of ``pred`` (N, Q) against ``target`` (N,).

    Example:
        >>> import torch
        >>> round(float(pinball_loss(torch.tensor([[0.2, 0.5]]), torch.tensor([1.0]), (0.1, 0.5))), 3)
        0.165
    """
    import torch

    tau = torch.as_tensor(list(quantiles), dtype=pred.dtype, device=pred.device)  # (Q,)
    diff = target.to(pred.dtype)[:, None] - pred  # (N, Q)
    return torch.maximum(tau * diff, (tau - 1.0) * diff).mean()


class QuantileHeadPRM(SharedService):
    """PROGRS's quantile-regression PRM: a base model plus a monotone quantile head.

    At each step tag (see :func:`encode_steps`) a linear head maps the last hidden state to Q
    numbers ``a``; the quantiles are ``sigmoid(a_0 + cumsum(0, softplus(a_1..)))``, ascending in
    the quantile level and inside (0, 1). Implements ``PRMScorer``; :meth:`fit` trains with
    :func:`pinball_loss`; :meth:`save_pretrained` / :meth:`from_pretrained` round-trip.

    Args:
        base_model: A transformers model (its ``base_model`` gives hidden states) or a name/path.
        tokenizer: Its tokenizer (loaded from ``base_model`` when it is a name).
        quantiles: Ascending levels in (0, 1).
        step_tag, step_sep, add_bos: Text layout, as in :class:`HFStepPRM`.
        batch_size: Responses per forward.
        seed: Initialises the head.

    Example:
        >>> prm = QuantileHeadPRM(tiny_model(tok), tok)  # doctest: +SKIP
        >>> prm.fit([("2+2?", ["4", "\\\\boxed{4}"])], [[0.8, 1.0]], epochs=20)  # doctest: +SKIP
        >>> prm.score([("2+2?", ["4"])])[0].shape  # doctest: +SKIP
        (1, 3)
    """

    HEAD_FILE = "quantile_head.safetensors"
    LEGACY_HEAD_FILE = "quantile_head.pt"  # written before safetensors; read with weights_only
    CONFIG_FILE = "quantile_head.json"

    def __init__(self, base_model: Any, tokenizer: Any | None = None, *,
                 quantiles: Sequence[float] = (0.1, 0.5, 0.9), step_tag: str = "\n\n",
                 step_sep: str = "", add_bos: bool = True, batch_size: int = 8, seed: int = 0) -> None:
        import torch

        qs = tuple(float(q) for q in quantiles)
        if not qs or any(not 0.0 < q < 1.0 for q in qs) or list(qs) != sorted(qs):
            raise ValueError(f"quantiles must be ascending levels in (0, 1), got {quantiles!r}")
        self.base, self.tokenizer = load_model(base_model, tokenizer, kind="base")
        self.quantiles, self.step_tag, self.step_sep, self.add_bos = qs, step_tag, step_sep, add_bos
        self.batch_size = int(batch_size)
        self.tag_ids = list(self.tokenizer.encode(step_tag, add_special_tokens=False))
        hidden = self.base.config.get_text_config().hidden_size
        gen = torch.Generator().manual_seed(int(seed))
        self.head = torch.nn.Linear(hidden, len(qs))
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(len(qs), hidden, generator=gen) * 0.1 * hidden**-0.5)
            self.head.bias.zero_()
        self.head.to(self.base.device)
        self.module = torch.nn.ModuleDict({"base": self.base, "head": self.head})

    def forward(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[Any]:
        """Differentiable quantiles per item, tensors of shape (len(steps), Q)."""
        import torch

        encs = [encode_steps(self.tokenizer, q, s, tag_ids=self.tag_ids, step_sep=self.step_sep,
                             add_bos=self.add_bos) for q, s in items]
        out: list[Any] = [torch.zeros(0, len(self.quantiles)) for _ in items]
        todo = [i for i, (_, pos) in enumerate(encs) if pos]
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s: s + self.batch_size]
            ids, attn = pad_right([encs[i][0] for i in chunk], self.tokenizer.pad_token_id or 0, self.base.device)
            h = hidden_states(self.base, ids, attn)  # (B, T, H)
            for b, i in enumerate(chunk):
                a = self.head(h[b, encs[i][1]].to(self.head.weight.dtype)).float()  # (K, Q)
                inc = torch.nn.functional.softplus(a[:, 1:]).cumsum(-1)
                out[i] = torch.sigmoid(torch.cat([a[:, :1], a[:, :1] + inc], -1))
        return out

    def score(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """For each ``(question, steps)``, quantiles ``(len(steps), Q)``, ascending per step."""
        import torch

        self.module.eval()
        with torch.no_grad():
            return [t.double().cpu().numpy() for t in self.forward(items)]

    def fit(self, items: Sequence[tuple[str, Sequence[str]]], targets: Sequence[Sequence[float]], *,
            epochs: int = 50, lr: float = 1e-2, train_base: bool = False) -> list[float]:
        """Train on per-step targets in [0, 1] (e.g. MC Q-values or outcomes) with the pinball loss.

        Returns:
            The mean loss of each epoch.
        """
        import torch

        if len(items) != len(targets) or any(len(s) != len(t) for (_, s), t in zip(items, targets)):
            raise ValueError("need one target per step of every item")
        flags = [p.requires_grad for p in self.base.parameters()]
        for p in self.base.parameters():
            p.requires_grad_(train_base)
        opt = torch.optim.Adam(self.module.parameters() if train_base else self.head.parameters(), lr=lr)
        self.module.train()
        losses = []
        for _ in range(int(epochs)):
            total, count = 0.0, 0
            for s in range(0, len(items), self.batch_size):
                preds = self.forward(items[s: s + self.batch_size])
                ys = [torch.as_tensor(list(t), dtype=torch.float32) for t in targets[s: s + self.batch_size]]
                pred, y = torch.cat(preds), torch.cat(ys).to(preds[0].device)
                if len(y) == 0:
                    continue
                loss = pinball_loss(pred, y, self.quantiles)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, count = total + float(loss.detach()) * len(y), count + len(y)
            losses.append(total / max(count, 1))
        self.module.eval()
        for p, f in zip(self.base.parameters(), flags):
            p.requires_grad_(f)
        return losses

    def save_pretrained(self, path: str) -> None:
        """Save the base (``save_pretrained``), the tokenizer, the head weights (safetensors, no
        pickle) and settings."""
        from reasonenv.models.hf_utils import save_with_head

        save_with_head(path, self.base, self.tokenizer, self.head, self.HEAD_FILE, self.CONFIG_FILE,
                       {"quantiles": list(self.quantiles), "step_tag": self.step_tag,
                        "step_sep": self.step_sep, "add_bos": self.add_bos})

    @classmethod
    def from_pretrained(cls, path: str, *, dtype: str = "float32", **kwargs: Any) -> QuantileHeadPRM:
        """Load what :meth:`save_pretrained` wrote (``kwargs`` override saved settings).

        Raises:
            FileNotFoundError: ``path`` is not a quantile-PRM folder (names the missing file).
        """
        import json
        from pathlib import Path

        folder = Path(path)
        cfg_path = folder / cls.CONFIG_FILE
        head_path = folder / cls.HEAD_FILE
        if not head_path.is_file() and (folder / cls.LEGACY_HEAD_FILE).is_file():
            head_path = folder / cls.LEGACY_HEAD_FILE
        for f in (cfg_path, head_path):
            if not f.is_file():
                raise FileNotFoundError(f"{str(f)!r} does not exist: {str(path)!r} is not a "
                                        "QuantileHeadPRM folder (save_pretrained writes one)")
        cfg = json.loads(cfg_path.read_text())
        cfg.update(kwargs)
        base, tok = load_model(str(path), None, kind="base", dtype=dtype)
        prm = cls(base, tok, **cfg)
        if head_path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(head_path), device=str(prm.base.device))
        else:
            import torch

            state = torch.load(head_path, map_location=prm.base.device, weights_only=True)
        prm.head.load_state_dict({k: v.to(prm.head.weight.dtype) for k, v in state.items()})
        return prm
