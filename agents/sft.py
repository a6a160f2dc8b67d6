"""Supervised fine-tuning of the tiny testbed model: a character-level Llama taught the worked
solutions of procedural problems, in exactly the text the env shows the policy at RL time.

``reasonenv sft --config configs/tiny/sft.yaml`` builds a ``LlamaForCausalLM`` of about a million
parameters over :func:`reasonenv.tokenizers.char_tokenizer`, generates seeded examples (the
prompt rendered by the env's :class:`~reasonenv.envs.prompts.PromptTemplate`, then the worked
solution joined with the env's step separator, then ``<eos>``; the loss is on the response
tokens only), trains it with transformers' ``Trainer`` and saves a normal model folder
(``config.json``, ``model.safetensors``, tokenizer files) plus ``sft.json`` (config, its hash,
summary) and ``sft_log.jsonl`` (the loss). A second run whose config hashes the same finds the
folder and does nothing.

Seeds: the training problems are ``source[i]`` of ``seed=data.train_seed`` (1000) and the
validation-loss problems of ``seed=data.val_seed`` (1001); the problems of
``data.holdout_seeds`` (``reasonenv eval``'s default seed 0 = test, 1 = validation, 2 = spare),
first ``data.holdout_limit`` of each, are removed from the training set by question text.

Example:
    >>> cfg = load_sft_config(None, ["train.steps=5", "model.hidden_size=32"])
    >>> cfg.train.steps, cfg.model.hidden_size, len(cfg.config_hash())
    (5, 32, 16)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reasonenv.agents.config import ConfigError, from_dict
from reasonenv.agents.sft_data import (
    SFTDataConfig,
    build_examples,
    collate,
    holdout_questions,
    seeded_source,
)

#: Bump when the data or the training changes meaning, so that cached folders are retrained.
FORMAT = "reasonenv-sft-1"
MANIFEST = "sft.json"
LOG = "sft_log.jsonl"


@dataclass
class TinyModelConfig:
    hidden_size: int = 128  # d_model: 4 layers x 128 with the 102-token char vocab is ~0.87M params
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 4  # < num_heads = grouped-query attention
    intermediate_size: int = 384  # SwiGLU width
    max_positions: int = 256  # longest prompt + response the model is built for
    tie_embeddings: bool = True  # one matrix for input and output embeddings


@dataclass
class SFTTrainConfig:
    steps: int = 900  # optimizer steps
    batch_size: int = 32
    lr: float = 3e-3  # tiny models take large steps
    schedule: str = "constant"  # after warmup: constant | cosine | linear
    warmup_steps: int = 30
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0  # model init and data order


@dataclass
class SFTRunConfig:
    out_dir: str = "runs/tiny/sft"  # the model folder
    log_every: int = 10  # training loss to sft_log.jsonl every N steps
    eval_every: int = 0  # validation loss every N steps (0: only at the end)
    progress: bool = True  # progress bar
    force: bool = False  # retrain even when out_dir holds this config's model
    # Also save the model after these steps, as out_dir/step-<N> (each a full folder whose
    # sft.json is that of train.steps=N). With schedule "constant" the snapshot after N steps
    # is the model a run of N steps gives, so one run measures several SFT lengths.
    snapshots: list[int] = field(default_factory=list)
    threads: int = 0  # torch intra-op threads (0: torch's default; 1 is faster on a busy machine)


@dataclass
class SFTConfig:
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    run: SFTRunConfig = field(default_factory=SFTRunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested dict of the config."""
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """16 hex digits over what determines the weights (model, data, train; not ``run``)."""
        keyed = {k: v for k, v in self.to_dict().items() if k != "run"}
        text = json.dumps({"format": FORMAT, **keyed}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def check_sft_config(cfg: SFTConfig) -> SFTConfig:
    """Check values the types alone do not (ranges, choices, the problem spec).

    Raises:
        ConfigError: Naming the field and the value.
    """
    from reasonenv.envs.prompts import PromptTemplate
    from reasonenv.problems.procedural import ProceduralSource

    positive = {"model.hidden_size": cfg.model.hidden_size, "model.num_layers": cfg.model.num_layers,
                "model.num_heads": cfg.model.num_heads, "model.num_kv_heads": cfg.model.num_kv_heads,
                "model.intermediate_size": cfg.model.intermediate_size,
                "model.max_positions": cfg.model.max_positions, "data.num_examples": cfg.data.num_examples,
                "data.val_examples": cfg.data.val_examples, "train.steps": cfg.train.steps,
                "train.batch_size": cfg.train.batch_size, "run.log_every": cfg.run.log_every}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value!r}")
    nonneg = {"data.train_seed": cfg.data.train_seed, "data.val_seed": cfg.data.val_seed,
              "data.holdout_limit": cfg.data.holdout_limit, "train.warmup_steps": cfg.train.warmup_steps,
              "train.seed": cfg.train.seed, "run.eval_every": cfg.run.eval_every,
              "run.threads": cfg.run.threads}
    for key, value in nonneg.items():
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value!r}")
    if any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < cfg.train.steps
           for n in cfg.run.snapshots):
        raise ConfigError(f"run.snapshots must hold steps in 1..train.steps-1={cfg.train.steps - 1}, "
                          f"got {cfg.run.snapshots!r}")
    if cfg.run.snapshots and cfg.train.schedule != "constant":
        raise ConfigError(f"run.snapshots needs train.schedule=constant, got {cfg.train.schedule!r} "
                          "(with a decaying rate a snapshot is not the model of a shorter run)")
    if cfg.train.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {cfg.train.lr!r}")
    if cfg.model.hidden_size % cfg.model.num_heads:
        raise ConfigError(f"model.hidden_size={cfg.model.hidden_size} is not a multiple of "
                          f"model.num_heads={cfg.model.num_heads}")
    if cfg.model.num_heads % cfg.model.num_kv_heads:
        raise ConfigError(f"model.num_heads={cfg.model.num_heads} is not a multiple of "
                          f"model.num_kv_heads={cfg.model.num_kv_heads}")
    if cfg.train.schedule not in SCHEDULES:
        raise ConfigError(f"train.schedule={cfg.train.schedule!r}; valid: {list(SCHEDULES)}")
    if cfg.data.split not in ("\n\n", "\n"):
        raise ConfigError(f"data.split={cfg.data.split!r}; valid: ['\\n\\n', '\\n']")
    seeds = [cfg.data.train_seed, cfg.data.val_seed]
    for s in cfg.data.holdout_seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"data.holdout_seeds must hold ints >= 0, got {cfg.data.holdout_seeds!r}")
    clash = sorted(set(seeds) & set(cfg.data.holdout_seeds))
    if cfg.data.train_seed == cfg.data.val_seed or clash:
        raise ConfigError(f"data.train_seed={cfg.data.train_seed}, data.val_seed={cfg.data.val_seed} "
                          f"and data.holdout_seeds={cfg.data.holdout_seeds} must be distinct")
    if "seed=" in cfg.data.problems:
        raise ConfigError(f"data.problems={cfg.data.problems!r} must not set seed= "
                          "(data.train_seed / val_seed / holdout_seeds do)")
    if not cfg.data.problems.strip().startswith("procedural"):
        raise ConfigError(f"data.problems={cfg.data.problems!r} must be a procedural source "
                          "(worked solutions), e.g. 'procedural:chained_sums?difficulty=3'")
    try:
        source = seeded_source(cfg.data.problems, 0)
        PromptTemplate(cfg.data.template, chat=cfg.data.chat)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"data: {e}") from None
    if not isinstance(source, ProceduralSource):
        raise ConfigError(f"data.problems={cfg.data.problems!r} must be a procedural source")
    return cfg


def load_sft_config(path: str | Path | None, overrides: Sequence[str] = ()) -> SFTConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    Unknown keys fail naming them, like :func:`reasonenv.agents.config.load_config`.

    Raises:
        ConfigError: Unknown keys, wrong types or values, malformed overrides, bad YAML.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping, got {type(data).__name__}")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like group.key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
        *groups, last = key.strip().split(".")
        node = data
        for g in groups:
            node = node.setdefault(g, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {g!r} is not a group")
        node[last] = value
    return check_sft_config(from_dict(SFTConfig, data))


# ------------------------------------------------------------------------------------- model


def build_model(cfg: TinyModelConfig, tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` sized for ``tokenizer`` (seeded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=cfg.tie_embeddings, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def count_parameters(model: Any) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------- training


@dataclass
class SFTResult:
    """What :func:`run_sft` did: ``skipped`` is True when ``out_dir`` already held the model."""

    out_dir: Path
    config_hash: str
    skipped: bool
    summary: dict[str, Any]


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """``out_dir/sft.json`` when it exists next to a saved model, else None."""
    folder = Path(out_dir)
    path = folder / MANIFEST
    if not path.is_file() or not (folder / "model.safetensors").is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def _callbacks(log_path: Path, progress: bool, steps: int, snapshot: Any) -> list[Any]:
    """A JSONL loss logger, a one-line tqdm bar (instead of the Trainer's printed dicts), and
    ``snapshot(step, model)`` called after every optimizer step."""
    from transformers import TrainerCallback

    class JSONLLog(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.bar: Any = None
            self.last: dict[str, float] = {}

        def on_train_begin(self, args, state, control, **kw):
            if progress:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=steps, desc="sft", unit="step", dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kw):
            snapshot(state.global_step, kw["model"])
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kw):
            row = {"step": state.global_step, "seconds": round(time.perf_counter() - self.start, 3)}
            row.update({k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))})
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            self.last.update({k: v for k, v in row.items() if k in ("loss", "eval_loss")})
            if self.bar is not None and self.last:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in self.last.items()})

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.close()

    return [JSONLLog()]


def _prepare_out_dir(folder: Path, force: bool) -> None:
    """Make ``folder`` ready for a new model: refuse to overwrite what this command did not write."""
    if folder.exists() and any(folder.iterdir()):
        ours = (folder / MANIFEST).is_file() or (folder / LOG).is_file()
        if not ours and not force:
            raise ConfigError(f"run.out_dir={str(folder)!r} holds files that are not an SFT model; "
                              "choose another folder or set run.force=true")
        (folder / MANIFEST).unlink(missing_ok=True)  # until the new model is complete
        (folder / LOG).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)


def save_model(folder: Path, model: Any, tokenizer: Any, cfg: SFTConfig, summary: dict[str, Any]) -> None:
    """Write the model folder: weights and config, tokenizer files, then ``sft.json`` (last, so
    that only a complete folder is ever a cache hit)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / MANIFEST).write_text(json.dumps(
        {"format": FORMAT, "config_hash": cfg.config_hash(), "config": cfg.to_dict(), "summary": summary},
        indent=2), encoding="utf-8")


def snapshot_config(cfg: SFTConfig, steps: int) -> SFTConfig:
    """The config of a run of ``steps`` steps writing to ``out_dir/step-<steps>``."""
    return dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, steps=steps),
        run=dataclasses.replace(cfg.run, out_dir=str(Path(cfg.run.out_dir) / f"step-{steps}"), snapshots=[]))


def run_sft(cfg: SFTConfig) -> SFTResult:
    """Build the data and the model, train, save; or do nothing when ``out_dir`` holds this config's model.

    Returns:
        An :class:`SFTResult`; its ``summary`` has the parameter count, loss first / last /
        validation, seconds (data, training) and the seeds used.
    """
    folder = Path(cfg.run.out_dir)
    key = cfg.config_hash()
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("config_hash") == key and not cfg.run.force:
        return SFTResult(folder, key, True, manifest.get("summary", {}))
    _prepare_out_dir(folder, cfg.run.force)

    import torch
    from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments

    from reasonenv.tokenizers import char_tokenizer

    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    t0 = time.perf_counter()
    tok = char_tokenizer()
    held = holdout_questions(cfg.data)
    train, skipped = build_examples(cfg.data, tok, cfg.data.train_seed, cfg.data.num_examples, held)
    val, _ = build_examples(cfg.data, tok, cfg.data.val_seed, cfg.data.val_examples, held)
    longest = max(len(e.input_ids) for e in train + val)
    if longest > cfg.model.max_positions:
        raise ConfigError(f"model.max_positions={cfg.model.max_positions} is shorter than the "
                          f"longest example ({longest} tokens)")
    data_seconds = time.perf_counter() - t0
    seeds = {"train": cfg.data.train_seed, "val_loss": cfg.data.val_seed,
             "holdout": list(cfg.data.holdout_seeds)}

    def snapshot(step: int, model: Any) -> None:
        if step in cfg.run.snapshots:
            sub = snapshot_config(cfg, step)
            save_model(Path(sub.run.out_dir), model, tok, sub, {
                "steps": step, "batch_size": cfg.train.batch_size, "snapshot_of": str(folder),
                "seconds": round(time.perf_counter() - t0, 2), "seeds": seeds})

    model = build_model(cfg.model, tok, cfg.train.seed)
    t = cfg.train
    with tempfile.TemporaryDirectory(prefix="reasonenv-sft-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, max_steps=t.steps, per_device_train_batch_size=t.batch_size,
            per_device_eval_batch_size=t.batch_size, learning_rate=t.lr,
            lr_scheduler_type=SCHEDULES[t.schedule], warmup_steps=t.warmup_steps,
            weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, seed=t.seed, data_seed=t.seed,
            logging_steps=cfg.run.log_every, logging_first_step=True,
            eval_strategy="steps" if cfg.run.eval_every else "no",
            eval_steps=cfg.run.eval_every or None, save_strategy="no", report_to="none",
            disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False,
            remove_unused_columns=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                          data_collator=lambda batch: collate(batch, tok.pad_token_id),
                          callbacks=_callbacks(folder / LOG, cfg.run.progress, t.steps, snapshot))
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        t1 = time.perf_counter()
        out = trainer.train()
        train_seconds = time.perf_counter() - t1
        val_loss = float(trainer.evaluate()["eval_loss"])
    losses = [r["loss"] for r in map(json.loads, (folder / LOG).read_text().splitlines()) if "loss" in r]
    summary = {
        "parameters": count_parameters(model), "steps": t.steps, "batch_size": t.batch_size,
        "train_examples": len(train), "holdout_skipped": skipped,
        "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
        "train_loss": float(out.training_loss), "val_loss": val_loss,
        "data_seconds": round(data_seconds, 2), "train_seconds": round(train_seconds, 2),
        "seconds": round(time.perf_counter() - t0, 2), "threads": torch.get_num_threads(),
        "seeds": seeds,
    }
    save_model(folder, model.eval(), tok, cfg, summary)
    return SFTResult(folder, key, False, summary)


def format_summary(result: SFTResult, cfg: SFTConfig) -> str:
    """Two lines for the end of ``reasonenv sft``."""
    s = result.summary
    if result.skipped:
        return (f"sft: {result.out_dir} already holds this config's model (hash {result.config_hash}); "
                f"nothing to do (run.force=true retrains). It was trained in {s.get('seconds', '?')} s.")
    m = cfg.model
    return (f"sft: {s['parameters'] / 1e6:.2f}M-parameter Llama ({m.num_layers} layers, d={m.hidden_size}), "
            f"{s['steps']} steps x {s['batch_size']} on {cfg.data.problems} (seed {cfg.data.train_seed}, "
            f"{s['train_examples']} problems, {s['holdout_skipped']} held out)\n"
            f"sft: loss {s['first_loss']:.3f} -> {s['final_loss']:.3f} (validation {s['val_loss']:.3f}) in "
            f"{s['seconds']:.0f} s (data {s['data_seconds']:.0f} s); saved {result.out_dir} "
            f"[hash {result.config_hash}]")
