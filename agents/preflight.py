"""Pre-flight: check every value of a :class:`TrainConfig` that can be checked without a model.

``reasonenv train`` (and ``--print-config``) run :func:`check_config` before importing torch,
and :class:`~reasonenv.agents.trainer.Trainer` runs it before loading anything, so a bad value
costs a second, not a model load, and fails with one :class:`ConfigError` line naming the key
and the value.

Example:
    >>> from reasonenv.agents.config import load_config
    >>> check_config(load_config(None, ["rollout.group_size=0"]))
    Traceback (most recent call last):
    ...
    reasonenv.agents.config.ConfigError: rollout.group_size=0: must be an int >= 1
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from reasonenv.agents.config import ConfigError, TrainConfig
from reasonenv.agents.hub_access import hub_cached, hub_offline, looks_like_hub_id

# key -> smallest allowed value (ints)
INT_MIN = {
    "env.max_steps": 1, "env.max_tokens": 1,
    "rollout.num_problems": 1, "rollout.group_size": 1, "rollout.max_step_tokens": 1,
    "algo.inner_epochs": 1, "algo.micro_batch": 1,
    "optim.warmup_steps": 0,
    "run.steps": 1, "run.seed": 0,
    "run.checkpoint_every": 0,  # 0 = a checkpoint after the last update only
}
# key -> (low, high, low inclusive, high inclusive, what it is); nan is never inside
FLOAT_RANGE = {
    "optim.lr": (0.0, math.inf, True, False, "a finite number >= 0"),
    "optim.weight_decay": (0.0, math.inf, True, False, "a finite number >= 0"),
    "optim.beta1": (0.0, 1.0, True, False, "in [0, 1)"),
    "optim.beta2": (0.0, 1.0, True, False, "in [0, 1)"),
    "optim.max_grad_norm": (0.0, math.inf, False, True, "> 0 (inf = no clipping)"),
    "rollout.temperature": (0.0, math.inf, False, False, "a finite number > 0"),
    "rollout.top_p": (0.0, 1.0, False, True, "in (0, 1]"),
    "algo.clip_eps_low": (0.0, 1.0, True, True, "in [0, 1]"),
    "algo.clip_eps_high": (0.0, math.inf, True, False, "a finite number >= 0"),
    "algo.kl_coef": (0.0, math.inf, True, False, "a finite number >= 0"),
    "algo.advantage.eps": (0.0, math.inf, True, False, "a finite number >= 0"),
}


def _get(cfg: TrainConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _fail(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(" ".join(f"{key}={value!r}: {why}".split()))


def check_numbers(cfg: TrainConfig) -> None:
    """Counts, sizes and rates: the bounds in :data:`INT_MIN` and :data:`FLOAT_RANGE`."""
    for key, low in INT_MIN.items():
        if _get(cfg, key) < low:
            raise _fail(key, _get(cfg, key), f"must be an int >= {low}")
    for key, (lo, hi, lo_ok, hi_ok, what) in FLOAT_RANGE.items():
        v = _get(cfg, key)
        # nan compares false with everything, so it is outside every range
        inside = (v > lo or (lo_ok and v == lo)) and (v < hi or (hi_ok and v == hi))
        if not inside:
            raise _fail(key, v, f"must be {what}")


def check_model_name(key: str, name: Any, *, need_config: bool = True) -> None:
    """A model name must be a local folder, a packaged alias or a hub id ``org/name``; a hub id
    needs the hub to be reachable or the model in the local cache."""
    from reasonenv.models.assets import PACKAGED_MODELS, model_source

    if not isinstance(name, str) or not name.strip():
        raise _fail(key, name, "must be a model folder, a packaged model or a hub id org/name")
    try:
        kind, _ = model_source(name)
    except FileNotFoundError as e:
        raise _fail(key, name, str(e)) from None
    path = Path(name)
    if kind == "local":
        if need_config and not (path / "config.json").is_file():
            raise _fail(key, name, "the folder has no config.json (not a transformers model folder)")
        return
    if kind == "packaged":
        return
    if path.exists():
        raise _fail(key, name, "is a file; a model is a folder (with config.json)")
    if not looks_like_hub_id(name):
        raise _fail(key, name, "no such folder, and not a packaged model "
                    f"({', '.join(PACKAGED_MODELS)}) or a hub id org/name")
    offline = hub_offline("model")
    if offline and not hub_cached(name, "model"):
        raise _fail(key, name, f"not a local folder, and as a hub id it needs the Hugging Face hub, "
                    f"which is offline ({offline}) with no cached copy; pass a local folder")


def check_problems(cfg: TrainConfig) -> None:
    """``env.problems``: checked as ``make_source`` would, without reading the data."""
    from reasonenv.problems.datasets import CACHE_ENV
    from reasonenv.problems.factory import check_spec

    spec = cfg.env.problems
    try:
        hub_id = check_spec(spec)
    except (ValueError, OSError, ImportError) as e:
        raise _fail("env.problems", spec, str(e)) from None
    if hub_id is None:
        return
    offline = hub_offline("dataset")
    extra = (os.environ[CACHE_ENV],) if os.environ.get(CACHE_ENV) else ()
    if offline and not hub_cached(hub_id, "dataset", extra):
        raise _fail("env.problems", spec, f"downloads {hub_id} from the Hugging Face hub, which is "
                    f"offline ({offline}) with no cached copy; add ?path= to a local JSONL")


def check_vllm_options(cfg: TrainConfig) -> None:
    """``rollout.vllm``: known ``VLLMEngineConfig`` options, each of the option's type."""
    import dataclasses

    from reasonenv.agents.vllm_policy import VLLMEngineConfig

    names = sorted(f.name for f in dataclasses.fields(VLLMEngineConfig))
    defaults = VLLMEngineConfig()
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,), dict: (dict,)}
    for key, value in cfg.rollout.vllm.items():
        if key not in names:
            raise _fail(f"rollout.vllm.{key}", value,
                        f"not a VLLMEngineConfig option (one of {', '.join(names)})")
        default = getattr(defaults, key)
        want = kinds.get(type(default))  # None for options whose default is None: not checked
        if want and value is not None and (not isinstance(value, want)
                                           or (bool not in want and isinstance(value, bool))):
            raise _fail(f"rollout.vllm.{key}", value, f"must be a {type(default).__name__}")


def check_shaping(cfg: TrainConfig) -> None:
    """Shaper names and options, the advantage estimator they lead to, and the services spec."""
    from types import SimpleNamespace

    from reasonenv.agents.samples import resolve_advantage_config
    from reasonenv.shaping import make_shaper
    from reasonenv.shaping.service_factory import check_services

    slots = []
    for i, spec in enumerate(cfg.shaping.shapers):
        try:
            shaper, _ = make_shaper(spec)  # no services: names and options only
        except (ValueError, TypeError) as e:
            raise _fail(f"shaping.shapers[{i}]", spec, str(e)) from None
        slots.append(SimpleNamespace(name=shaper.name, shaper=shaper))
    try:
        resolve_advantage_config(cfg.algo.advantage, SimpleNamespace(slots=slots))
    except ValueError as e:
        raise _fail("algo.advantage.estimator", cfg.algo.advantage.estimator, str(e)) from None
    services = dict(cfg.shaping.services)
    if services.get("ref_model") == "reference":  # the trainer's frozen copy of the policy
        services.pop("ref_model")
    try:
        models = check_services(services)
    except ValueError as e:
        raise _fail("shaping.services", cfg.shaping.services, str(e)) from None
    for where, name in models.items():
        check_model_name(f"shaping.services.{where}", name, need_config=False)
    if "prover.value_head" in models:
        check_value_head_K(cfg, slots, str(models["prover.value_head"]))


def check_value_head_K(cfg: TrainConfig, slots: list[Any], folder: str) -> None:
    """A learned value head answers only the Best-of-K it was trained for: a ``pav`` shaper
    asking another K would fail at its first step, after the models loaded."""
    import json

    meta = Path(folder) / "value_head.json"
    try:
        trained = int(json.loads(meta.read_text(encoding="utf-8"))["K"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unreadable folder is reported by the loader, naming the file
    for i, slot in enumerate(slots):
        K = getattr(slot.shaper.config, "K", None)
        if slot.name == "pav" and K is not None and int(K) != trained:
            raise _fail(f"shaping.shapers[{i}].K", K, f"the value head {folder!r} was trained for K={trained}")


def check_env_id(cfg: TrainConfig) -> None:
    """``env.id`` must be registered with gymnasium."""
    import gymnasium as gym

    import reasonenv  # noqa: F401  (registers the reasonenv ids)

    try:
        gym.spec(cfg.env.id)
    except gym.error.Error as e:
        raise _fail("env.id", cfg.env.id, str(e)) from None


def check_out_dir(cfg: TrainConfig) -> None:
    """``run.out_dir`` must be (or be creatable as) a writable folder; with ``run.resume`` its
    checkpoints, if any, must include a readable one."""
    key, raw = "run.out_dir", cfg.run.out_dir
    out = Path(raw).expanduser()
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == out else f"cannot be created: {str(existing)!r} is a file"
        raise _fail(key, raw, f"{where}; it must be a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "is not writable" if existing == out else f"cannot be created in {str(existing)!r}"
        raise _fail(key, raw, f"{where} (permission denied)")
    ckpts = out / "checkpoints"
    if ckpts.exists() and not ckpts.is_dir():
        raise _fail(key, raw, f"{str(ckpts)!r} is a file; it must be the checkpoints folder")
    if cfg.run.resume:
        check_resumable(out)


def check_resumable(out: Path) -> None:
    """Checkpoints in ``out`` exist but none is readable: an error (starting over would
    overwrite the run). Only the headers are read."""
    from reasonenv.agents.checkpoints import (
        CheckpointError,
        list_checkpoints,
        load_checkpoint_header,
    )

    ckpts = list_checkpoints(out, warn=False)
    if not ckpts:
        return
    errors = []
    for p in ckpts:
        try:
            load_checkpoint_header(p)
            return
        except CheckpointError as e:
            errors.append(str(e))
    raise _fail("run.resume", True, f"no readable checkpoint in {str(out / 'checkpoints')!r} "
                f"({errors[0]}); move them away or set run.resume=false")


def check_config(cfg: TrainConfig, *, check_model: bool = True) -> None:
    """Check everything that can be checked without loading a model (or any data).

    Args:
        cfg: The resolved config.
        check_model: Also check ``model.name`` (off when the caller passes a loaded model).

    Raises:
        ConfigError: one line naming the first bad key and its value.
    """
    check_numbers(cfg)
    check_env_id(cfg)
    check_problems(cfg)
    check_shaping(cfg)
    check_vllm_options(cfg)
    if check_model:
        check_model_name("model.name", cfg.model.name)
    check_out_dir(cfg)
