"""A stable-baselines3 model trained on ``MathTokens-v0`` as a step-level Policy.

``MathTokens-v0`` gives an SB3 agent one token per action and a numeric observation: the prompt
and the response so far as zero-padded token ids plus their count. The evaluator (and every
step-level consumer) talks to policies one reasoning *step* at a time, with text observations.
:class:`SB3Policy` bridges the two: per slot it keeps the prompt's token ids (encoded as the
token env encodes them) and the tokens it has generated, rebuilds exactly the observation the
token env would return, and asks the model for one token at a time, all live slots in one
batch, until the step ends by the env's own rules.

:class:`TokenEmbedding` is a features extractor for such agents (token ids are categories, not
magnitudes); it lives here so that a zip trained with it loads wherever reasonenv is installed.
:meth:`SB3Policy.load` reads a zip without unpickling anything in it
(:mod:`reasonenv.agents.sb3_zip`): a zip someone hands you runs no code.

Example:
    >>> import gymnasium as gym, reasonenv
    >>> from stable_baselines3 import PPO
    >>> env = gym.make("reasonenv/MathTokens-v0", prompt="{question} ", max_tokens=4,
    ...                max_prompt_tokens=16)
    >>> pol = SB3Policy(PPO("MultiInputPolicy", env, n_steps=8, batch_size=8), max_tokens=4)
    >>> pol.reset([0])
    >>> (action,) = pol.act(["What is 2 + 3? "], [0])
    >>> sorted(action), 1 <= len(action["token_ids"]) <= 4
    (['eos', 'logprobs', 'text', 'token_ids'], True)
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from reasonenv.agents import sb3_zip
from reasonenv.envs.termination import final_answer_end
from reasonenv.segmentation import IncrementalDecoder, Segmenter

#: Algorithms whose zips :meth:`SB3Policy.load` reads, by the name ``algo=`` takes.
ALGORITHMS = ("ppo", "a2c", "dqn")


def token_observation(token_ids: Sequence[int], max_len: int) -> dict[str, np.ndarray]:
    """The ``MathTokens-v0`` observation of a context (prompt + response token ids).

    Args:
        token_ids: The prompt's ids followed by the response's, at most ``max_len`` of them.
        max_len: The observation width (``max_prompt_tokens + max_tokens`` of the env).

    Returns:
        ``{"token_ids": (max_len,) int64 zero-padded, "length": (1,) int64}``.

    Raises:
        ValueError: More than ``max_len`` ids.

    Example:
        >>> obs = token_observation([7, 8, 9], 5)
        >>> obs["token_ids"].tolist(), obs["length"].tolist()
        ([7, 8, 9, 0, 0], [3])
    """
    n = len(token_ids)
    if n > max_len:
        raise ValueError(f"token_ids has {n} ids, over the observation width max_len={max_len}")
    buf = np.zeros(max_len, dtype=np.int64)
    buf[:n] = token_ids
    return {"token_ids": buf, "length": np.array([n], dtype=np.int64)}


class TokenEmbedding(BaseFeaturesExtractor):
    """Features of a ``MathTokens-v0`` observation: one learned vector per token position.

    SB3's default extractor feeds token ids to the MLP as floats, so ``"7"`` (id 29) sits
    between ``"6"`` and ``"8"`` by magnitude only by accident of the vocabulary's order; an
    embedding treats ids as the categories they are. Padding (id 0) gets its own vector.

    Args:
        observation_space: The env's ``Dict(token_ids, length)`` space.
        dim: Embedding width; the features are ``max_len * dim`` wide.

    Example:
        >>> from reasonenv.envs.spaces import token_observation_space
        >>> ext = TokenEmbedding(token_observation_space(102, 6), dim=4)
        >>> obs = {k: th.as_tensor(v[None]) for k, v in token_observation([5, 9], 6).items()}
        >>> tuple(ext(obs).shape)
        (1, 24)
    """

    def __init__(self, observation_space: spaces.Dict, dim: int = 8) -> None:
        ids = observation_space["token_ids"]
        super().__init__(observation_space, ids.shape[0] * dim)
        self.embed = th.nn.Embedding(int(ids.high.max()) + 1, dim)

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """``(B, max_len)`` ids (as floats, SB3's preprocessing) -> ``(B, max_len * dim)``."""
        return self.embed(observations["token_ids"].long()).flatten(1)


@dataclass
class _Slot:
    """One slot's episode: the prompt's ids and the response decoded so far."""

    prompt_ids: list[int]
    decoder: IncrementalDecoder

    def ids(self) -> list[int]:
        return self.prompt_ids + self.decoder.ids


@dataclass
class _Row:
    """One slot's step under construction during an :meth:`SB3Policy.act` call."""

    slot: int
    state: _Slot
    start_tok: int
    start_char: int
    lps: list[float] = field(default_factory=list)
    eos: bool = False
    done: bool = False


def _plain_char_tokenizer() -> Any:
    """The char tokenizer ``MathTokens-v0`` defaults to, without its chat template.

    ``MathTokens-v0`` renders plain prompts unless told ``prompt={"chat": True}``; an eval env
    given a tokenizer with a chat template would wrap them (``reasonenv eval --chat auto``)
    and show the model prompts it never saw in training.
    """
    from reasonenv.tokenizers import char_tokenizer

    tok = copy.deepcopy(char_tokenizer())  # the cached instance is shared: never edit it
    tok.chat_template = None
    return tok


class SB3Policy:
    """Runs a stable-baselines3 model trained on ``MathTokens-v0`` behind the Policy protocol.

    For each slot the policy keeps the prompt's token ids (its first observation encoded with
    ``add_special_tokens=False``, as the token env encodes prompts) and the tokens it sampled
    since, builds the token env's observation from them (:func:`token_observation`, width read
    from the model's observation space) and samples one token per live slot per batched
    forward. A step ends where ``MathTokens-v0`` ends one: the segmenter's boundary
    (:class:`~reasonenv.segmentation.Segmenter`, on the incrementally decoded text), the EOS
    token, the token that completes the first final answer (the env stops the episode there),
    or ``max_tokens`` response tokens; or at ``max_step_tokens``. The observation buffer bounds
    the response too (the token env truncates by then: ``len(prompt) <= max_prompt_tokens``),
    so a full buffer ends the step like the budget does, without ``eos``: an eval env with the
    training ``max_tokens`` truncates there, as in training. Asked to go on (an env with a
    larger budget), a slot with no room left answers an empty step with ``eos=True``.

    Each action is ``{"text", "token_ids", "eos"}`` plus ``"logprobs"`` (log pi of each sampled
    token under the policy's distribution) when sampling from an actor-critic policy (PPO,
    A2C); deterministic (argmax) actions and value-based models (DQN, through
    ``model.predict``) carry none. Sampling draws from torch's global generator, as
    ``model.predict`` does: seed it (``stable_baselines3.common.utils.set_random_seed``) for
    repeatable runs.

    Args:
        model: A loaded SB3 model (``PPO``, ``A2C``, ``DQN``) whose observation space is the
            token env's ``Dict(token_ids, length)`` and whose action space is
            ``Discrete(len(tokenizer))``.
        tokenizer: The tokenizer the model was trained with; default the token env's
            character-level one (without its chat template, see above). Hand it to the eval
            env (``env_kwargs={"tokenizer": pol.tokenizer}``) so prompts match.
        split: The env's step delimiter (``"\\n\\n"``, ``"\\n"``, ``"fixed:N"``).
        deterministic: Argmax tokens instead of samples.
        max_step_tokens: Cap on one step's tokens.
        max_tokens: The response budget the model was trained with (the token env's
            ``max_tokens``); default only the observation buffer bounds it.

    Raises:
        ValueError: A model whose spaces are not the token env's, or a tokenizer of another size.

    Example:
        >>> import gymnasium as gym, reasonenv
        >>> from stable_baselines3 import PPO
        >>> env = gym.make("reasonenv/MathTokens-v0", prompt="{question} ", max_tokens=2,
        ...                max_prompt_tokens=16)
        >>> pol = SB3Policy(PPO("MultiInputPolicy", env, n_steps=8, batch_size=8), max_tokens=2,
        ...                 deterministic=True)
        >>> pol.max_len, len(pol.tokenizer)
        (18, 102)
        >>> pol.reset([0]); len(pol.act(["What is 2 + 3? "], [0])[0]["token_ids"]) <= 2
        True
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        *,
        split: str = "\n\n",
        deterministic: bool = False,
        max_step_tokens: int = 512,
        max_tokens: int | None = None,
    ) -> None:
        for name, value in (("max_step_tokens", max_step_tokens), ("max_tokens", max_tokens)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else _plain_char_tokenizer()
        self.max_len = _check_spaces(model, len(self.tokenizer))
        self.segmenter = Segmenter(split)
        self.deterministic = bool(deterministic)
        self.max_step_tokens = max_step_tokens
        self.max_tokens = max_tokens
        self.eos_id = getattr(self.tokenizer, "eos_token_id", None)
        self._slots: dict[int, _Slot] = {}
        self.forward_calls = 0  # batched model calls so far (one per generated token position)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        algo: str | None = None,
        device: str = "cpu",
        tokenizer: Any | None = None,
        split: str = "\n\n",
        deterministic: bool = False,
        max_step_tokens: int = 512,
        max_tokens: int | None = None,
    ) -> SB3Policy:
        """Load an SB3 zip saved by ``model.save(path)``, without unpickling anything in it.

        SB3 keeps the values JSON cannot hold (the policy class, the spaces, schedules, buffer
        classes) as pickles in the zip's ``data`` part, and its own loader unpickles them, which
        lets a zip run any code. This loader reads ``data`` as JSON and rebuilds every pickled
        value from the readable fields SB3 writes beside it (:mod:`reasonenv.agents.sb3_zip`),
        from an allowlist only: SB3's Mlp/MultiInput policy classes of the algorithm, its
        rollout/replay buffers and schedules, gymnasium ``Dict``/``Box``/``Discrete`` spaces,
        :class:`TokenEmbedding` (or SB3's flatten/combined extractor), torch's usual
        activations and optimizers, and Python literals; the training-only rollout state
        (``_last_obs``, episode buffers) is left empty, as in a fresh model; DQN's
        ``train_freq``, stored with no readable fields, is read off its pickle's opcodes by a
        disassembler (:func:`pickletools.genops`, which builds nothing). The substitutes go
        to ``<ALGO>.load(custom_objects=...)``, which then skips those pickles; the weights are
        tensors SB3 reads with ``torch.load(weights_only=True)``. A pickled value outside the
        allowlist (a custom policy or extractor class, a schedule *function*, an unknown key)
        is a one-line ``ValueError`` naming it, before the model loads. The algorithm is read
        from the JSON (PPO unless it carries A2C's or DQN's settings); ``algo=`` overrides it.

        Args:
            path: The zip (``"model"`` finds ``"model.zip"``, as SB3 does).
            algo: ``"ppo"``, ``"a2c"`` or ``"dqn"``; default read from the zip.
            device: Torch device of the model.
            tokenizer, split, deterministic, max_step_tokens, max_tokens: As for the class.

        Raises:
            ValueError: A missing file or not an SB3 zip, an unknown ``algo``, a pickled value
                that cannot be rebuilt without unpickling it, or a model that does not fit.

        Example:
            >>> SB3Policy.load("/nonexistent/agent.zip")
            Traceback (most recent call last):
            ...
            ValueError: sb3 model '/nonexistent/agent.zip' does not exist
        """
        p = Path(path)
        if not p.is_file() and Path(f"{p}.zip").is_file():
            p = Path(f"{p}.zip")
        if not p.is_file():
            raise ValueError(f"sb3 model {str(path)!r} does not exist")
        if algo is not None and algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {list(ALGORITHMS)}, got {algo!r}")
        raw = p.read_bytes()  # read once: what is checked is what loads
        data = sb3_zip.read_data(raw, str(path))
        name = algo if algo is not None else sb3_zip.algorithm_of(data)
        custom = sb3_zip.custom_objects(data, name, where=str(path))
        import stable_baselines3 as sb3

        model = getattr(sb3, name.upper()).load(io.BytesIO(raw), device=device,
                                                custom_objects=custom)
        return cls(model, tokenizer, split=split, deterministic=deterministic,
                   max_step_tokens=max_step_tokens, max_tokens=max_tokens)

    # -- state ------------------------------------------------------------------------------
    def reset(self, slots: Sequence[int]) -> None:
        """Forget ``slots``: their next observation is a prompt."""
        for s in slots:
            self._slots.pop(s, None)

    def observation(self, slot: int) -> dict[str, np.ndarray]:
        """What the model sees for ``slot`` now: the token env's observation of its context.

        Raises:
            KeyError: A slot with no episode (no :meth:`act` since its reset).
        """
        return token_observation(self._slots[slot].ids(), self.max_len)

    # -- acting -----------------------------------------------------------------------------
    def act(self, observations: Sequence[Any], slots: Sequence[int]) -> list[dict[str, Any]]:
        """Generate one step per slot, one batched model call per token.

        Args:
            observations: One per slot. A slot's first observation (``str`` or a mapping with
                ``"text"``) is its prompt; later ones are ignored, as the slot continues its
                own token history (the convention of the built-in policies).
            slots: The slot of each observation (distinct).

        Returns:
            One ``{"text", "token_ids", "eos"[, "logprobs"]}`` action per observation.

        Raises:
            ValueError: A repeated slot, or a prompt that leaves no room in the observation.
        """
        if len(set(slots)) != len(slots):
            raise ValueError(f"act() got the same slot twice: {list(slots)}")
        rows = []
        for obs, slot in zip(observations, slots):
            st = self._slots.get(slot)
            if st is None:
                st = self._new_slot(obs, slot)
            rows.append(_Row(slot, st, len(st.decoder.ids), len(st.decoder.text)))
        try:
            self._generate(rows)
        except BaseException:
            self.reset([r.slot for r in rows])  # half-generated steps: start these slots over
            raise
        actions = []
        for r in rows:
            dec = r.state.decoder
            action: dict[str, Any] = {"text": dec.text[r.start_char:],
                                      "token_ids": dec.ids[r.start_tok:], "eos": r.eos}
            if self._gives_logprobs():
                action["logprobs"] = r.lps
            actions.append(action)
        return actions

    def _new_slot(self, obs: Any, slot: int) -> _Slot:
        text = obs if isinstance(obs, str) else obs["text"]
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        if len(ids) >= self.max_len:
            raise ValueError(
                f"slot {slot}: the prompt has {len(ids)} tokens, but the model's observation holds "
                f"max_len={self.max_len} (prompt and response): no room for a response"
            )
        st = self._slots[slot] = _Slot(ids, IncrementalDecoder(self.tokenizer))
        return st

    def _generate(self, rows: list[_Row]) -> None:
        live = [r for r in rows if not self._over(r)]
        for r in rows:
            if r not in live:  # no room left: end the response without a token
                r.eos = r.done = True
        while live:
            batch = [token_observation(r.state.ids(), self.max_len) for r in live]
            obs = {k: np.stack([b[k] for b in batch]) for k in ("token_ids", "length")}
            tokens, lps = self._sample(obs)
            self.forward_calls += 1
            for i, r in enumerate(live):
                self._push(r, int(tokens[i]), None if lps is None else float(lps[i]))
            live = [r for r in live if not r.done]

    def _push(self, r: _Row, tok: int, lp: float | None) -> None:
        """Append one token to ``r``'s response and decide whether its step is over."""
        dec = r.state.decoder
        dec.push(tok)
        if lp is not None:
            r.lps.append(lp)
        n_step = len(dec.ids) - r.start_tok
        r.eos = tok == self.eos_id
        full = len(r.state.prompt_ids) + len(dec.ids) >= self.max_len
        budget = self.max_tokens is not None and len(dec.ids) >= self.max_tokens
        r.done = (r.eos or full or budget or n_step >= self.max_step_tokens
                  or final_answer_end(dec.text) is not None
                  or self.segmenter.ends_step(dec.text[r.start_char:], n_step))

    def _over(self, r: _Row) -> bool:
        """Whether ``r``'s slot can take no more tokens (buffer full or budget spent)."""
        n = len(r.state.decoder.ids)
        return (len(r.state.prompt_ids) + n >= self.max_len
                or (self.max_tokens is not None and n >= self.max_tokens))

    def _gives_logprobs(self) -> bool:
        return not self.deterministic and hasattr(self.model.policy, "get_distribution")

    def _sample(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """One token per row of ``obs``, and its log-prob when :meth:`_gives_logprobs`."""
        if not self._gives_logprobs():
            actions, _ = self.model.predict(obs, deterministic=self.deterministic)
            return np.asarray(actions).reshape(-1), None
        policy = self.model.policy
        policy.set_training_mode(False)
        tensor, _ = policy.obs_to_tensor(obs)
        with th.no_grad():  # what ActorCriticPolicy._predict does, keeping the distribution
            dist = policy.get_distribution(tensor)
            actions = dist.get_actions(deterministic=False)
            lps = dist.log_prob(actions)
        return actions.cpu().numpy().reshape(-1), lps.cpu().numpy().reshape(-1)


def _check_spaces(model: Any, vocab_size: int) -> int:
    """The observation width of ``model``; raises unless its spaces are the token env's."""
    obs_space, act_space = model.observation_space, model.action_space
    if not (isinstance(obs_space, spaces.Dict) and set(obs_space.spaces) == {"token_ids", "length"}):
        raise ValueError(
            f"model.observation_space must be MathTokens-v0's Dict(token_ids, length), got {obs_space}"
        )
    ids = obs_space["token_ids"]
    if len(ids.shape) != 1:
        raise ValueError(f"model observation 'token_ids' must be 1-D, got shape {ids.shape}")
    if not isinstance(act_space, spaces.Discrete) or int(act_space.n) != vocab_size:
        raise ValueError(
            f"model.action_space must be Discrete(len(tokenizer))=Discrete({vocab_size}), got "
            f"{act_space}: pass the tokenizer the model was trained with"
        )
    return int(ids.shape[0])

