"""A learned value head as PAV's prover (an optional estimator behind ``ProverService``).

Train it on Monte-Carlo Best-of-K targets; it then answers ``q_values`` with one forward.
:meth:`ValueHeadProver.save_pretrained` writes a folder (the base model and tokenizer with
``save_pretrained``, the head as ``value_head.safetensors``, its settings as ``value_head.json``;
no pickle) that :meth:`ValueHeadProver.from_pretrained` and the services config
(``{"prover": {"value_head": path}}``) load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reasonenv.models.hf_utils import hidden_states, load_model, pad_right
from reasonenv.shaping.protocols import ProverRequest, SharedService


class ValueHeadProver(SharedService):
    """Learned Q^{BoK} estimator: a value head on a transformers model (optional PAV backend).

    ``sigmoid(w . h + b)`` where ``h`` is the base model's last hidden state at the last token
    of ``prompt + prefix``. Train it on Monte-Carlo targets (e.g. from :class:`MCProver`) with
    :meth:`fit`; :meth:`q_values` then ignores ``m`` and requires the ``K`` it was trained for.

    Args:
        model: A loaded transformers model (causal LM or base) or a name/path for
            :func:`reasonenv.models.assets.resolve_model`.
        tokenizer: Its tokenizer (loaded from ``model`` when it is a name).
        K: The Best-of-K size of the targets.
        max_length: Keep at most this many last tokens of ``prompt + prefix``.
        batch_size: Texts per forward.
        seed: Initialises the head.

    Example:
        >>> vh = ValueHeadProver(tiny_model(tok), tok, K=4)  # doctest: +SKIP
        >>> vh.fit(requests, mc.q_values(requests, K=4, m=20), epochs=100)  # doctest: +SKIP
        >>> vh.save_pretrained("runs/value_head")  # doctest: +SKIP
        >>> ValueHeadProver.from_pretrained("runs/value_head").q_values(requests, K=4, m=20)  # doctest: +SKIP
    """

    HEAD_FILE = "value_head.safetensors"
    CONFIG_FILE = "value_head.json"

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        *,
        K: int = 4,
        max_length: int = 1024,
        batch_size: int = 8,
        seed: int = 0,
    ) -> None:
        import torch

        self.base, self.tokenizer = load_model(model, tokenizer, kind="base")
        hidden = self.base.config.get_text_config().hidden_size
        gen = torch.Generator().manual_seed(int(seed))
        self.head = torch.nn.Linear(hidden, 1)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(1, hidden, generator=gen) * hidden**-0.5)
            self.head.bias.zero_()
        self.head.to(device=self.base.device)
        self.module = torch.nn.ModuleDict({"base": self.base, "head": self.head})
        self.K, self.max_length, self.batch_size = int(K), int(max_length), int(batch_size)

    def _logits(self, requests: Sequence[ProverRequest]) -> Any:
        """Head logits, shape (B,)."""
        import torch

        seqs = []
        for r in requests:
            ids = list(self.tokenizer.encode(r.prompt + r.prefix, add_special_tokens=False))
            seqs.append(ids[-self.max_length :] or [self.tokenizer.bos_token_id or 0])
        ids, attn = pad_right(seqs, self.tokenizer.pad_token_id or 0, self.base.device)
        h = hidden_states(self.base, ids, attn)  # (B, T, H)
        last = attn.sum(-1) - 1  # (B,)
        h_last = h[torch.arange(len(seqs), device=h.device), last]  # (B, H)
        return self.head(h_last.to(self.head.weight.dtype)).squeeze(-1)

    def q_values(self, requests: Sequence[ProverRequest], *, K: int, m: int) -> list[float]:
        """Predicted Q^{BoK} per request (``m`` ignored; ``K`` must match the trained K)."""
        import torch

        if K != self.K:
            raise ValueError(f"this ValueHeadProver was trained for K={self.K}, asked for K={K}")
        self.module.eval()
        out: list[float] = []
        with torch.no_grad():
            for i in range(0, len(requests), self.batch_size):
                out += torch.sigmoid(self._logits(requests[i : i + self.batch_size])).tolist()
        return out

    def fit(
        self,
        requests: Sequence[ProverRequest],
        targets: Sequence[float],
        *,
        epochs: int = 50,
        lr: float = 1e-2,
        train_base: bool = False,
    ) -> list[float]:
        """Fit the head (and the base if ``train_base``) to targets in [0, 1] with BCE.

        Returns:
            The mean loss of each epoch.
        """
        import torch

        if len(requests) != len(targets):
            raise ValueError(f"{len(requests)} requests but {len(targets)} targets")
        y_all = torch.tensor([float(t) for t in targets], dtype=torch.float32, device=self.base.device)
        params = list(self.module.parameters()) if train_base else list(self.head.parameters())
        flags = [p.requires_grad for p in self.base.parameters()]
        for p in self.base.parameters():
            p.requires_grad_(train_base)
        opt = torch.optim.Adam(params, lr=lr)
        self.module.train()
        losses = []
        for _ in range(int(epochs)):
            total = 0.0
            for i in range(0, len(requests), self.batch_size):
                logits = self._logits(requests[i : i + self.batch_size]).float()
                y = y_all[i : i + self.batch_size]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(y)
            losses.append(total / max(len(requests), 1))
        self.module.eval()
        for p, f in zip(self.base.parameters(), flags):
            p.requires_grad_(f)
        return losses

    def save_pretrained(self, path: str) -> None:
        """Write a folder :meth:`from_pretrained` loads: base + tokenizer, head, settings.

        The base model and tokenizer go through their own ``save_pretrained`` (safetensors);
        the head's weights go to ``value_head.safetensors`` and ``K`` / ``max_length`` to
        ``value_head.json``. Nothing is pickled.
        """
        from reasonenv.models.hf_utils import save_with_head

        save_with_head(path, self.base, self.tokenizer, self.head, self.HEAD_FILE, self.CONFIG_FILE,
                       {"K": self.K, "max_length": self.max_length})

    @classmethod
    def from_pretrained(cls, path: str, *, dtype: str = "float32", **kwargs: Any) -> ValueHeadProver:
        """Load what :meth:`save_pretrained` wrote.

        Args:
            path: The folder.
            dtype: torch dtype name of the base model.
            **kwargs: Override saved settings or set ``batch_size``; ``K`` cannot change (the
                head was trained for its ``K``).

        Raises:
            FileNotFoundError: ``path`` is not a value-head folder (names the missing file).
            ValueError: An override of ``K`` that differs from the saved one, or an unknown key.
        """
        import json
        from pathlib import Path

        from safetensors.torch import load_file

        folder = Path(path)
        cfg_path, head_path = folder / cls.CONFIG_FILE, folder / cls.HEAD_FILE
        for f in (cfg_path, head_path):
            if not f.is_file():
                raise FileNotFoundError(f"{str(f)!r} does not exist: {str(path)!r} is not a "
                                        "ValueHeadProver folder (save_pretrained writes one)")
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        unknown = sorted(set(kwargs) - {"K", "max_length", "batch_size"})
        if unknown:
            raise ValueError(f"ValueHeadProver.from_pretrained: unknown key(s) {unknown}; "
                             "valid: ['K', 'batch_size', 'max_length']")
        if "K" in kwargs and int(kwargs["K"]) != int(cfg["K"]):
            raise ValueError(f"K={kwargs['K']!r} but the value head in {str(path)!r} was trained "
                             f"for K={cfg['K']}")
        cfg.update(kwargs)
        base, tok = load_model(str(folder), None, kind="base", dtype=dtype)
        vh = cls(base, tok, K=int(cfg["K"]), max_length=int(cfg["max_length"]),
                 batch_size=int(cfg.get("batch_size", 8)))
        state = load_file(str(head_path), device=str(vh.base.device))
        vh.head.load_state_dict({k: v.to(vh.head.weight.dtype) for k, v in state.items()})
        return vh
