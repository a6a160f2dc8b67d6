"""GRPO-family trainer: sample B problems x G responses through the group env, compose
advantages from the outcome and the configured shapers, and take PPO-clip steps.

Reads top to bottom: ``Trainer.__init__`` builds everything from a :class:`TrainConfig`,
``rollout`` plays one batch of episodes, ``make_batch`` turns them into token-level tensors
with advantages (pure math in :mod:`reasonenv.agents.grpo`), ``update`` is the optimisation
step, ``train`` loops with metrics, checkpoints and exact resume.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reasonenv.agents.checkpoints import (
    CheckpointWarning,
    capture_rng,
    checkpoint_path,
    load_latest,
    restore_rng,
    save_checkpoint,
)
from reasonenv.agents.config import ConfigError, TrainConfig, save_config
from reasonenv.agents.grpo import (
    loss_denominator,
    packed_token_logprobs,
    policy_loss,
    token_logprobs,
)
from reasonenv.agents.preflight import check_config
from reasonenv.agents.runlog import RunLogger, plot_curves
from reasonenv.agents.samples import (
    TrainSample,
    collate,
    collate_packed,
    resolve_advantage_config,
    samples_of_group,
)
from reasonenv.shaping.advantages import compose_advantages, terms_of_group


def load_model(cfg: TrainConfig) -> tuple[Any, Any]:
    """Load the policy model and tokenizer named by ``cfg.model`` (local, packaged or hub)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonenv.models.assets import resolve_model

    path = resolve_model(cfg.model.name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, cfg.model.dtype))
    return model, tok


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """One training run. See the module docstring; tests drive it with tiny models.

    Args:
        cfg: The resolved configuration.
        model: An already-loaded causal LM (default: load ``cfg.model``).
        tokenizer: Its tokenizer.

    Raises:
        ConfigError: a value :func:`~reasonenv.agents.preflight.check_config` rejects, before
            the model (or anything else) is loaded.
    """

    def __init__(self, cfg: TrainConfig, model: Any = None, tokenizer: Any = None) -> None:
        check_config(cfg, check_model=model is None)  # before anything is loaded
        import torch

        import reasonenv
        from reasonenv.models.ref_scorer import HFRefScorer
        from reasonenv.shaping import get_shaper_class

        self.cfg = cfg
        self.rank, self.world = _world()
        torch.manual_seed(cfg.run.seed)
        if model is None:
            model, tokenizer = load_model(cfg)
        self.model, self.tok = model, tokenizer
        if cfg.model.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        services = dict(cfg.shaping.services)
        # A shaper that declares the ref_logprobs service gets the trainer's frozen reference
        # unless the services name another one.
        wants_ref = any("ref_logprobs" in get_shaper_class(s["name"] if isinstance(s, dict) else s).services
                        for s in cfg.shaping.shapers if isinstance(s, (dict, str)))
        if wants_ref and "ref_model" not in services:
            services["ref_model"] = "reference"
        needs_ref = cfg.algo.kl_coef > 0 or services.get("ref_model") == "reference"
        # The frozen reference: the initial weights (PRL's pi_ref, the k3 KL's anchor).
        self.ref = copy.deepcopy(model).eval().requires_grad_(False) if needs_ref else None
        self._packing_checked = False  # algo.pack: check_packing runs before the first packed forward
        if services.get("ref_model") == "reference":
            services["ref_model"] = HFRefScorer(self.ref, tokenizer)
        prompt: dict[str, Any] = {"chat": cfg.env.chat}
        if cfg.env.template:
            prompt["template"] = cfg.env.template
        self.venv = reasonenv.make_group_env(
            cfg.env.id, cfg.rollout.num_problems, cfg.rollout.group_size, autoreset=False,
            problems=cfg.env.problems, tokenizer=tokenizer, prompt=prompt, split=cfg.env.split,
            max_steps=cfg.env.max_steps, max_tokens=cfg.env.max_tokens,
            last_number_fallback=cfg.env.last_number_fallback,
            shapers=list(cfg.shaping.shapers), services=services,
        )
        env0 = self.venv.envs[0].unwrapped
        self.pipeline, self.source = env0.pipeline, env0.source
        try:
            self.adv_config = resolve_advantage_config(cfg.algo.advantage, self.pipeline)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.compose = compose_advantages  # the one composition rule (tests may wrap it)
        self.policy = self._make_policy(env0.segmenter.split)
        params = [p for p in self.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2),
                                           weight_decay=o.weight_decay,
                                           fused=o.fused and _fused_adamw_supported(params))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.data_rng = np.random.default_rng([cfg.run.seed, self.rank])
        self.step = 0
        self.ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model)

    def _make_policy(self, split: str) -> Any:
        cfg = self.cfg.rollout
        if cfg.backend == "vllm":
            from reasonenv.agents.vllm_policy import VLLMEngineConfig, VLLMPolicy, VLLMPolicyConfig

            # The engine loads a safetensors folder; after each update sync_weights() saves the
            # trainer's weights and the worker reloads them in place.
            folder = Path(self.cfg.run.out_dir) / f"policy_weights_rank{self.rank}"
            self.model.save_pretrained(folder)
            self.tok.save_pretrained(folder)
            return VLLMPolicy(str(folder), self.tok, VLLMPolicyConfig(
                temperature=cfg.temperature, top_p=cfg.top_p, max_step_tokens=cfg.max_step_tokens,
                split=split, seed=self.cfg.run.seed + 7919 * self.rank),
                engine_config=VLLMEngineConfig(**{"max_model_len": min(
                    4096, int(getattr(self.model.config, "max_position_embeddings", 4096))),
                    **cfg.vllm}))
        from reasonenv.agents.hf import HFPolicy, HFPolicyConfig

        return HFPolicy(self.model, self.tok, HFPolicyConfig(
            temperature=cfg.temperature, top_p=cfg.top_p, max_step_tokens=cfg.max_step_tokens,
            split=split, seed=self.cfg.run.seed + 7919 * self.rank))

    def _lr_factor(self, step: int) -> float:
        o, total = self.cfg.optim, max(1, self.cfg.run.steps)
        if step < o.warmup_steps:
            return (step + 1) / (o.warmup_steps + 1)
        frac = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
        if o.schedule == "linear":
            return max(0.0, 1.0 - frac)
        if o.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))
        return 1.0

    # ------------------------------------------------------------------ rollout
    def rollout(self) -> tuple[list[Any], dict[str, float]]:
        """Play one batch: B new problems, G responses each. Returns the GroupResults."""
        import torch

        t0 = time.perf_counter()
        B = self.cfg.rollout.num_problems
        problems = [self.source.sample(self.data_rng) for _ in range(B)]
        obs, _ = self.venv.reset(seed=int(self.data_rng.integers(2**31 - 1)),
                                 options={"problems": problems})
        self.policy.reset(list(range(self.venv.num_envs)))
        results: dict[int, Any] = {}
        n_tokens = 0
        self.model.eval()
        with torch.no_grad():
            while len(results) < B:
                live = [i for i in range(self.venv.num_envs) if not self.venv.done_mask[i]]
                acts = self.policy.act([obs[i] for i in live], live)
                actions: list[Any] = [""] * self.venv.num_envs
                for i, a in zip(live, acts):
                    actions[i] = a
                    n_tokens += len(a["token_ids"])
                obs, _, _, _, info = self.venv.step(actions)
                for b, g in enumerate(info.get("group_end", [])):
                    if g is not None:
                        results[b] = g
        # Every episode is over: free the policy's per-slot state (HFPolicy's KV caches) now,
        # not at the next rollout, so it is not held through the update's forward/backward.
        self.policy.reset(list(range(self.venv.num_envs)))
        dt = time.perf_counter() - t0
        return [results[b] for b in range(B)], {"rollout_time": dt, "tokens_per_s": n_tokens / dt}

    # ------------------------------------------------------------------ batch
    def make_batch(self, groups: list[Any]) -> list[TrainSample]:
        """Token advantages of every response, by the one composition rule, as train samples.

        Responses whose steps lack sampled log-probs (a step the env had to cut) count for their
        group's normalisation but are not trained on (``self.skipped``). Where the sampler's
        log-probs are not pi_old the batch is rescored by the training model, unless the update
        takes pi_old from its own forward (:meth:`_old_from_forward`).
        """
        terms = [terms_of_group(g) for g in groups]
        advantages, stats = self.compose(
            terms, self.pipeline.contributions(), self.adv_config,
            clip_to_outcome=[s.name for s in self.pipeline.slots if s.shaper.clip_to_outcome])
        self.compose_stats = stats.as_dict()
        batch: list[TrainSample] = []
        self.skipped = 0
        for g, adv in zip(groups, advantages):
            samples = samples_of_group(g, adv)
            self.skipped += sum(s is None for s in samples)
            batch.extend(s for s in samples if s is not None)
        T = self.cfg.rollout.temperature
        if self._rescore() and not self._old_from_forward():
            # vLLM may run another precision: pi_old comes from the training model itself.
            for s, lp in zip(batch, self._score(self.model, batch)):
                s.old_logprobs = lp
        if self.ref is not None and (self.cfg.algo.kl_coef > 0 or T != 1.0):
            missing = [s for s in batch if s.ref_logprobs is None or T != 1.0]
            for s, lp in zip(missing, self._score(self.ref, missing)):
                s.ref_logprobs = lp
        return batch

    def _rescore(self) -> bool:
        """Whether the sampler's log-probs are not pi_old: sampled at another temperature, or by
        vLLM (another process, maybe another precision); pi_old is then the training model's."""
        return self.cfg.rollout.temperature != 1.0 or self.cfg.rollout.backend == "vllm"

    def _old_from_forward(self) -> bool:
        """Whether the loss forward's own (detached) log-probs serve as pi_old.

        With one pass over the batch (``algo.inner_epochs=1``) every micro-batch's forward runs
        before the optimiser step, on the very weights a separate no-grad rescoring pass would
        read: its detached log-probs are pi_old, and the pass is skipped (TRL does the same with
        ``num_iterations=1``). Only where the sampler's log-probs are not pi_old (:meth:`_rescore`).
        """
        return self._rescore() and self.cfg.algo.inner_epochs == 1

    def _score(self, model: Any, samples: list[TrainSample]) -> list[np.ndarray]:
        """log-probs of each sample's response tokens under ``model`` (at the sampling temperature)."""
        import torch

        out = []
        with torch.no_grad():
            for chunk in _chunks(list(range(len(samples))), self.cfg.algo.micro_batch):
                t, logp, _ = self._logprobs(model, [samples[i] for i in chunk], with_entropy=False)
                for row in range(len(chunk)):
                    m = t["mask"][row].bool()
                    out.append(logp[row][m].double().numpy())
        return out

    def _logprobs(self, model: Any, samples: list[TrainSample], *, with_entropy: bool = True):
        """The collated micro-batch and its token log-probs (and entropy): padded rows, or packed
        ones with ``algo.pack`` (checked once against the padded forward, :meth:`check_packing`)."""
        T = self.cfg.rollout.temperature
        if not self.cfg.algo.pack:
            t = collate(samples)
            logp, ent = token_logprobs(model, t["input_ids"], t["attention_mask"], T,
                                       with_entropy=with_entropy, first=t["first"])
            return t, logp, ent
        if not self._packing_checked:
            self.check_packing(samples)
        t = collate_packed(samples)
        logp, ent = packed_token_logprobs(model, t, T, with_entropy=with_entropy)
        return t, logp, ent

    def check_packing(self, samples: list[TrainSample], tol: float = 1e-3) -> float:
        """Check that the model reads packed rows as separate sequences: the packed forward's
        log-probs of (up to) the 8 shortest ``samples`` against the padded forward's.

        A model whose attention ignores ``position_ids`` restarts would attend across sequences,
        which silently corrupts every log-prob; this catches it before the first update.

        Returns:
            The largest absolute difference.

        Raises:
            ValueError: if it exceeds ``tol``, naming ``algo.pack`` and the model class.
        """
        import torch

        few = sorted(samples, key=lambda s: len(s.prompt_ids) + len(s.response_ids))[:8]
        if len(few) < 2:  # one sequence per row proves nothing: check on a later micro-batch
            return 0.0
        T = self.cfg.rollout.temperature
        net, was_training = self.model, self.model.training
        net.eval()  # no dropout: the two forwards must see the same function
        with torch.no_grad():
            a = collate(few)
            padded, _ = token_logprobs(net, a["input_ids"], a["attention_mask"], T,
                                       with_entropy=False, first=a["first"])
            b = collate_packed(few)
            packed, _ = packed_token_logprobs(net, b, T, with_entropy=False)
        net.train(was_training)
        diff = 0.0
        for i, s in enumerate(few):
            n, p = len(s.response_ids), len(s.prompt_ids)
            diff = max(diff, float((padded[i, p - 1: p - 1 + n] - packed[i, :n]).abs().max()))
        if not diff <= tol:
            raise ValueError(f"algo.pack=true: {type(net).__name__} does not treat position_ids "
                             f"restarts as sequence boundaries (packed log-probs differ from padded "
                             f"ones by {diff:.3g} > {tol}); set algo.pack=false")
        self._packing_checked = True
        return diff

    # ------------------------------------------------------------------ update
    def update(self, batch: list[TrainSample]) -> dict[str, float]:
        """Policy-loss steps on the batch: ``inner_epochs`` passes, micro-batches, one optimiser
        step per pass, the loss normalised over the whole (global) batch."""
        import torch
        import torch.distributed as dist

        cfg = self.cfg.algo
        net = self.ddp or self.model
        self.model.train()
        n_local = float(sum(len(s.response_ids) for s in batch))
        counts = torch.tensor([n_local, float(len(batch))], dtype=torch.float64)
        if self.world > 1:
            dist.all_reduce(counts)
        # DDP averages gradients over ranks: scale the denominator back by the world size.
        denom = loss_denominator(cfg.loss_agg, float(counts[0]), float(counts[1]),
                                 self.cfg.env.max_tokens) / self.world
        use_ref = self.ref is not None or any(s.ref_logprobs is not None for s in batch)
        old_from_forward = self._old_from_forward()
        stats = {"loss": 0.0, "clip_tokens": 0.0, "clip_low_tokens": 0.0, "clip_high_tokens": 0.0,
                 "kl_sum": 0.0, "entropy_sum": 0.0, "grad_norm": 0.0}
        # Micro-batches of similar lengths pad less; the loss is a sum over the batch with one
        # denominator, so the order does not change it.
        order = sorted(range(len(batch)), key=lambda i: len(batch[i].prompt_ids) + len(batch[i].response_ids))
        for epoch in range(cfg.inner_epochs):
            last = epoch == cfg.inner_epochs - 1
            chunks = _chunks(order, cfg.micro_batch)
            for c, chunk in enumerate(chunks):
                sync = self.ddp is None or c == len(chunks) - 1
                ctx = self.ddp.no_sync() if not sync else contextlib.nullcontext()
                with ctx:
                    t, logp, ent = self._logprobs(net, [batch[i] for i in chunk])
                    old = logp.detach() if old_from_forward else t["old"]
                    loss, st = policy_loss(
                        logp, old, t["adv"], t["mask"], clip_eps_low=cfg.clip_eps_low,
                        clip_eps_high=cfg.clip_eps_high, ref_logp=t["ref"] if use_ref else None,
                        kl_coef=cfg.kl_coef, agg=cfg.loss_agg, denom=denom,
                        max_tokens=self.cfg.env.max_tokens)
                    loss.backward()
                if last:
                    stats["loss"] += float(loss.detach())
                    for k in ("clip_tokens", "clip_low_tokens", "clip_high_tokens", "kl_sum"):
                        stats[k] += float(st.get(k, 0.0))
                    stats["entropy_sum"] += float((ent.detach() * t["mask"]).sum())
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            stats["grad_norm"] = float(gn)
        self.scheduler.step()
        if hasattr(self.policy, "sync_weights"):
            self.policy.sync_weights(self.model)
        n = max(1.0, n_local)
        out = {"loss": stats["loss"], "grad_norm": stats["grad_norm"],
               "clip_frac": stats["clip_tokens"] / n, "clip_low_frac": stats["clip_low_tokens"] / n,
               "clip_high_frac": stats["clip_high_tokens"] / n, "entropy": stats["entropy_sum"] / n,
               "lr": self.optimizer.param_groups[0]["lr"]}
        if use_ref:
            out["kl"] = stats["kl_sum"] / n
        return out

    # ------------------------------------------------------------------ loop
    def train(self, callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = ()) -> list[dict[str, Any]]:
        """Run ``cfg.run.steps`` updates (from the newest checkpoint when resuming).

        Args:
            callbacks: Called as ``callback(trainer, record)`` after every update, with the
                update's record (``{"step": n, **metrics}``), before its checkpoint is saved; a
                callback may add keys to ``record`` (they reach metrics.jsonl), e.g. a held-out
                evaluation every few updates, as the learning study does.
        """
        cfg = self.cfg
        out = Path(cfg.run.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if cfg.run.resume:
            self.resume(out)
        if self.rank == 0:
            save_config(cfg, out / "config.yaml")
        log = RunLogger(out, tensorboard=cfg.run.tensorboard and self.rank == 0,
                        append=cfg.run.resume, start_step=self.step) if self.rank == 0 else None
        history: list[dict[str, Any]] = []
        bar = None
        if cfg.run.progress and self.rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.run.steps, initial=self.step, desc="train", dynamic_ncols=True)
        while self.step < cfg.run.steps:
            t0 = time.perf_counter()
            groups, rstats = self.rollout()
            t1 = time.perf_counter()
            batch = self.make_batch(groups)
            ustats = self.update(batch)
            metrics = {**self._rollout_metrics(groups), **rstats, **ustats,
                       "skipped_responses": self.skipped,
                       **{f"adv/{k}": v for k, v in self.compose_stats.items()},
                       "update_time": time.perf_counter() - t1, "step_time": time.perf_counter() - t0,
                       **{f"stats/{k}": v for k, v in self.pipeline.stats().items()}}
            self.step += 1
            record = {"step": self.step, **metrics}
            for callback in callbacks:
                callback(self, record)
            metrics = {k: v for k, v in record.items() if k != "step"}
            history.append(record)
            if log is not None:
                log.log(self.step, metrics)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(acc=f"{metrics['accuracy']:.2f}", loss=f"{metrics['loss']:.3f}")
            every = cfg.run.checkpoint_every
            if self.rank == 0 and ((every and self.step % every == 0) or self.step == cfg.run.steps):
                save_checkpoint(checkpoint_path(out, self.step), self.state_dict())
        if bar is not None:
            bar.close()
        if log is not None:
            log.close()
            if cfg.run.plot:
                plot_curves(out / "metrics.jsonl", out / "curves.png")
        return history

    def _rollout_metrics(self, groups: list[Any]) -> dict[str, float]:
        outcomes = np.concatenate([g.outcomes for g in groups])
        returns = np.concatenate([g.returns for g in groups])
        episodes = [ep for g in groups for ep in g.episodes]
        m = {"accuracy": float(outcomes.mean()), "reward": float(returns.mean()),
             "response_tokens": float(np.mean([sum(ep.step_lengths) for ep in episodes])),
             "steps_per_response": float(np.mean([len(ep.steps) for ep in episodes])),
             # Groups whose rewards are all equal give no GRPO signal; many of them = a dead run.
             "zero_std_groups": float(np.mean([np.ptp(g.outcomes) == 0 for g in groups]))}
        for name in self.pipeline.names:
            # Per response: the shaper's step + episode + group terms (what the env reports) ...
            per_resp = [sum(ep.step_terms.get(name, ())) + ep.episode_terms.get(name, 0.0)
                        + g.group_terms.get(name, [0.0] * len(g.episodes))[i]
                        for g in groups for i, ep in enumerate(g.episodes)]
            m[f"term/{name}"] = float(np.mean(per_resp))
            # ... and the mean of its token terms, where it has a token hook.
            toks = [v for ep in episodes for v in ep.token_terms.get(name, ())]
            if toks:
                m[f"token_term/{name}"] = float(np.mean(toks))
        return m

    # ------------------------------------------------------------------ checkpoints
    def resume(self, out: Path) -> None:
        """Load the newest readable checkpoint of ``out`` (unreadable ones are skipped with a
        warning naming them); with none at all, warn and start at step 0.

        Raises:
            CheckpointError: checkpoints exist but none is readable.
        """
        found = load_latest(out)
        if found is None:
            warnings.warn(f"run.resume=true but {out / 'checkpoints'} holds no checkpoint; "
                          "starting at step 0", CheckpointWarning, stacklevel=2)
            return
        self.load_state(found[1])

    def state_dict(self) -> dict[str, Any]:
        gen = getattr(self.policy, "_gen", None)
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data_rng": self.data_rng.bit_generator.state,
            "policy_rng": gen.get_state() if gen is not None else None,
            "rng": capture_rng(),
            "config": self.cfg.to_plain(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.data_rng.bit_generator.state = state["data_rng"]
        gen = getattr(self.policy, "_gen", None)
        if gen is not None and state.get("policy_rng") is not None:
            gen.set_state(state["policy_rng"])
        restore_rng(state["rng"])
        if hasattr(self.policy, "clear_cache"):
            self.policy.clear_cache()
        if hasattr(self.policy, "sync_weights"):
            self.policy.sync_weights(self.model)


def _fused_adamw_supported(params: list[Any]) -> bool:
    """Whether torch's fused AdamW takes these parameters: floating point, on CPU or CUDA."""
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                for p in params)


def _chunks(xs: list[int], n: int) -> list[list[int]]:
    return [xs[i: i + n] for i in range(0, len(xs), max(1, n))]


def print_summary(history: list[dict[str, Any]], cfg: TrainConfig) -> None:
    """A table of the run's updates (accuracy, reward, shaper terms, loss, KL, timing)."""
    if not history:
        print("no updates were run")
        return
    terms = sorted(k for k in history[-1] if k.startswith("term/") and k != "term/outcome")
    cols = ["step", "accuracy", "reward", *terms, "loss", "kl", "entropy", "clip_frac",
            "tokens_per_s", "step_time"]
    cols = [c for c in cols if any(c in h for h in history)]
    print(" ".join(f"{c.replace('term/', ''):>12}" for c in cols))
    for h in history:
        print(" ".join(f"{h.get(c, float('nan')):>12.4g}" for c in cols))
    out = Path(cfg.run.out_dir)
    print(f"metrics: {out / 'metrics.jsonl'}  curves: {out / 'curves.png'}  config: {out / 'config.yaml'}")


def main(cfg: TrainConfig) -> list[dict[str, Any]]:
    """Train from a config (initialises torch.distributed when launched with torchrun)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    trainer = None
    try:
        trainer = Trainer(cfg)
        return trainer.train()
    finally:
        if dist.is_initialized():
            dist.barrier()  # leave together: a rank that tears down early aborts the others
            del trainer  # DDP's reducer holds the process group
            dist.destroy_process_group()
