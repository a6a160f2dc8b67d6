"""Read a stable-baselines3 zip without unpickling anything in it.

An SB3 zip's ``data`` part is JSON, but SB3 stores every value that JSON cannot hold (the
policy class, the spaces, the schedules, the buffer classes, ...) as a base64 cloudpickle and
its loader unpickles them: a zip someone hands you can run any code. SB3 also writes, next to
each pickle, a human-readable copy of the object's fields (its ``__dict__``, JSON values as they
are, the rest as ``str()``). :func:`custom_objects` rebuilds every pickled value from those fields
alone, from allowlisted classes and literals (:func:`ast.literal_eval` on parsed nodes; nothing is
evaluated or imported by name), and SB3's ``<ALGO>.load(..., custom_objects=...)`` then skips the
pickles of exactly those keys. (DQN's ``train_freq`` has no readable fields: its two values are
read off the pickle's opcodes by :func:`pickletools.genops`, which disassembles and builds
nothing.) A pickled value it cannot rebuild so is a one-line ``ValueError``,
raised before the model loads. The ``.pth`` parts are tensors SB3 reads with
``torch.load(weights_only=True)``.

Example:
    >>> custom_objects({"verbose": 0}, "ppo", where="agent.zip")
    {}
    >>> custom_objects({"x": {":type:": "<class 'os._wrap_close'>", ":serialized:": "gASV"}},
    ...                "ppo", where="agent.zip")
    Traceback (most recent call last):
    ...
    ValueError: sb3 model 'agent.zip': refusing to unpickle 'x', which cannot be rebuilt from the allowlist: found <class 'os._wrap_close'>, under a key this loader does not rebuild
"""

from __future__ import annotations

import ast
import base64
import io
import json
import pickletools
import re
import zipfile
from typing import Any

#: Training-only rollout state: a freshly built model holds None there, and so does a loaded one.
_TRAINING_STATE = ("_last_obs", "_last_episode_starts", "_last_original_obs",
                   "ep_info_buffer", "ep_success_buffer")
_INIT = re.compile(r"<function (\w+)\.__init__ at 0x[0-9a-fA-F]+>")
_CLASS = re.compile(r"<class '([\w.]+)'>")
_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "bool")


class _Unsafe(ValueError):
    """A pickled value that cannot be rebuilt from its readable fields; ``str`` says what was found."""


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_data(raw: bytes, where: str) -> dict[str, Any]:
    """The ``data`` JSON of the SB3 zip ``raw`` (its bytes), as plain JSON values.

    Raises:
        ValueError: Not a zip, no ``data`` part, or not JSON.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            data = json.loads(zf.read("data").decode("utf-8"))
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise ValueError(f"sb3 model {where!r} is not an SB3 zip ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"sb3 model {where!r} is not an SB3 zip (its data is a {type(data).__name__})")
    return data


def algorithm_of(data: dict[str, Any]) -> str:
    """``"ppo"``, ``"a2c"`` or ``"dqn"`` from the keys of an SB3 zip's ``data``."""
    if "target_update_interval" in data:
        return "dqn"
    if "clip_range" in data:
        return "ppo"
    return "a2c"


def is_pickled(value: Any) -> bool:
    """Whether a ``data`` value is one SB3's loader would unpickle."""
    return isinstance(value, dict) and ":serialized:" in value


def custom_objects(data: dict[str, Any], algo: str, *, where: str) -> dict[str, Any]:
    """A substitute for every pickled value of ``data``, built without unpickling.

    Args:
        data: The zip's ``data`` JSON (:func:`read_data`).
        algo: ``"ppo"``, ``"a2c"`` or ``"dqn"``: which policy classes are allowed.
        where: The zip's name, for messages.

    Returns:
        ``{key: substitute}`` for exactly the pickled keys; pass it as SB3's ``custom_objects``.

    Raises:
        ValueError: One line naming the zip, the key and what was found, for a pickled value
            outside the allowlist (an unknown key, class, space, schedule or literal).
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not is_pickled(value):
            continue
        try:
            out[key] = _rebuild(key, value, algo)
        except _Unsafe as e:
            raise ValueError(
                f"sb3 model {where!r}: refusing to unpickle {key!r}, which cannot be rebuilt "
                f"from the allowlist: {e}"
            ) from None
    missing = [k for k, v in data.items() if is_pickled(v) and k not in out]
    if missing:  # cannot happen: every pickle is replaced, so SB3's loader unpickles none
        raise ValueError(f"sb3 model {where!r}: no substitute for the pickled {missing}")
    return out


def _rebuild(key: str, value: dict[str, Any], algo: str) -> Any:
    kind = value.get(":type:")
    if key in _TRAINING_STATE:
        return None
    if key == "policy_class":
        return _known_class(value, _policy_classes(algo), "policies")
    if key in ("rollout_buffer_class", "replay_buffer_class"):
        return _known_class(value, _buffer_classes(key), "buffers")
    if key == "policy_kwargs":
        return _policy_kwargs(value)
    if key in ("observation_space", "action_space"):
        return _space(value)
    if key == "train_freq" and algo == "dqn":
        return _train_freq(value)
    schedule = _schedule(value)
    if schedule is not None:
        return schedule
    hint = (" (a function is code: train with a float or SB3's LinearSchedule)"
            if kind == "<class 'function'>" else "")
    raise _Unsafe(f"found {_short(kind)}{hint}, under a key this loader does not rebuild")


# -- classes ----------------------------------------------------------------------------------
def _policy_classes(algo: str) -> dict[str, type]:
    import stable_baselines3 as sb3

    aliases = getattr(sb3, algo.upper()).policy_aliases
    return {_name(c): c for alias, c in aliases.items() if alias in ("MlpPolicy", "MultiInputPolicy")}


def _buffer_classes(key: str) -> dict[str, type]:
    from stable_baselines3.common import buffers as b

    found = ((b.RolloutBuffer, b.DictRolloutBuffer) if key == "rollout_buffer_class"
             else (b.ReplayBuffer, b.DictReplayBuffer))
    return {_name(c): c for c in found}


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _known_class(value: dict[str, Any], allowed: dict[str, type], what: str) -> type:
    """The allowlisted class a pickled class's readable fields name (its module and the owner
    of its ``__init__``), never the pickled class itself."""
    m = _INIT.fullmatch(str(value.get("__init__", "")))
    name = f"{value.get('__module__')}.{m.group(1)}" if m else None
    if value.get(":type:") != "<class 'abc.ABCMeta'>" or name not in allowed:
        found = name or f"a {value.get(':type:')} whose __init__ is {_short(value.get('__init__'))}"
        raise _Unsafe(f"found {found}, not one of the allowlisted {what} {sorted(allowed)}")
    return allowed[name]


def _kwarg_classes() -> dict[str, dict[str, type]]:
    import torch as th
    from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor

    from reasonenv.agents.sb3_policy import TokenEmbedding

    nn, opt = th.nn, th.optim
    groups = {
        "features_extractor_class": (TokenEmbedding, CombinedExtractor, FlattenExtractor),
        "activation_fn": (nn.ReLU, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Sigmoid),
        "optimizer_class": (opt.Adam, opt.AdamW, opt.RMSprop, opt.SGD),
    }
    return {k: {_name(c): c for c in cs} for k, cs in groups.items()}


def _policy_kwargs(value: dict[str, Any]) -> dict[str, Any]:
    """``policy_kwargs``: JSON values as they are, class strings from the allowlist of their
    keyword, any other string a Python literal."""
    if value.get(":type:") != "<class 'dict'>":
        raise _Unsafe(f"found {_short(value.get(':type:'))}, not a dict")
    classes = _kwarg_classes()
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name.startswith(":"):
            continue
        if not isinstance(item, str):
            out[name] = item  # JSON as SB3 stored it
            continue
        m = _CLASS.fullmatch(item)
        if m:
            allowed = classes.get(name, {})
            if m.group(1) not in allowed:
                raise _Unsafe(f"policy_kwargs[{name!r}] is {item}, not one of the allowlisted "
                              f"{sorted(allowed) or 'classes (none for this keyword)'}")
            out[name] = allowed[m.group(1)]
            continue
        try:
            out[name] = ast.literal_eval(item)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise _Unsafe(f"policy_kwargs[{name!r}] is {_short(item)}, not a Python literal") from None
    return out


# -- spaces -----------------------------------------------------------------------------------
def _space(value: dict[str, Any]) -> Any:
    """A gymnasium ``Dict`` of ``Box``/``Discrete`` spaces, or a ``Discrete``, from its fields."""
    from gymnasium import spaces

    kind = value.get(":type:")
    if kind == "<class 'gymnasium.spaces.discrete.Discrete'>":
        n, start = _int_field(value, "n"), _int_field({"start": 0, **value}, "start")
        dtype = _dtype(str(value.get("dtype", "int64")))
        return spaces.Discrete(n, start=start, dtype=dtype)
    if kind == "<class 'gymnasium.spaces.dict.Dict'>":
        text = value.get("spaces")
        try:
            tree = ast.parse(str(text), mode="eval").body
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            tree = None
        if not isinstance(tree, ast.Dict) or not tree.keys:
            raise _Unsafe(f"found Dict spaces {_short(text)}, not {{name: Box(...) or Discrete(...)}}")
        out = {}
        for k, v in zip(tree.keys, tree.values):
            if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
                raise _Unsafe(f"found Dict spaces {_short(text)} with a key that is not a string")
            out[k.value] = _sub_space(v, text)
        return spaces.Dict(out)
    raise _Unsafe(f"found a {_short(kind)}; only MathTokens-v0's spaces (a Dict of Box/Discrete "
                  "spaces, a Discrete action space) are rebuilt")


def _int_field(value: dict[str, Any], name: str) -> int:
    item = value.get(name)
    try:
        got = ast.literal_eval(item) if isinstance(item, str) else item
    except (ValueError, SyntaxError):
        got = None
    if isinstance(got, bool) or not isinstance(got, int):
        raise _Unsafe(f"found Discrete {name}={_short(item)}, not an int")
    return got


def _dtype(name: str) -> Any:
    import numpy as np

    if name not in _DTYPES:
        raise _Unsafe(f"found dtype {_short(name)}, not one of {list(_DTYPES)}")
    return np.dtype(name)


def _bound(node: ast.expr) -> float | int:
    """A Box bound: a number, ``inf`` or ``-inf`` (as numpy prints them)."""
    neg = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
    inner = node.operand if neg else node
    if isinstance(inner, ast.Name) and inner.id == "inf":
        return float("-inf") if neg else float("inf")
    got = ast.literal_eval(node)
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise ValueError(got)
    return got


def _sub_space(node: ast.expr, text: Any) -> Any:
    from gymnasium import spaces

    bad = _Unsafe(f"found Dict spaces {_short(text)}: a member is not Box(low, high, shape, dtype) "
                  "with scalar bounds or Discrete(n[, start=s])")
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise bad
    try:
        if node.func.id == "Box" and len(node.args) == 4 and not node.keywords:
            low, high = _bound(node.args[0]), _bound(node.args[1])
            shape = ast.literal_eval(node.args[2])
            dtype = node.args[3]
            if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)
                    and isinstance(dtype, ast.Name)):
                raise bad
            return spaces.Box(low, high, shape, _dtype(dtype.id))
        if node.func.id == "Discrete" and len(node.args) == 1:
            n = ast.literal_eval(node.args[0])
            kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            if set(kw) <= {"start"} and all(type(v) is int for v in (n, *kw.values())):
                return spaces.Discrete(n, **kw)
    except _Unsafe:
        raise
    except (ValueError, SyntaxError, TypeError):
        raise bad from None
    raise bad


# -- schedules and train_freq -----------------------------------------------------------------
_UTILS = "stable_baselines3.common.utils"


def _schedule(value: dict[str, Any]) -> Any:
    """SB3's ``FloatSchedule`` / ``ConstantSchedule`` / ``LinearSchedule`` from their fields;
    None for any other type."""
    from stable_baselines3.common import utils

    kind = value.get(":type:")
    if kind == f"<class '{_UTILS}.FloatSchedule'>":
        inner = value.get("value_schedule")
        try:
            call = ast.parse(str(inner), mode="eval").body
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            call = None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.args):
            raise _Unsafe(f"found FloatSchedule({_short(inner)}), not of a ConstantSchedule or "
                          "LinearSchedule (a schedule function is code)")
        try:
            fields = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except (ValueError, SyntaxError, TypeError):
            fields = None
        built = _simple_schedule(call.func.id, fields) if fields is not None else None
        if built is None:
            raise _Unsafe(f"found FloatSchedule({_short(inner)}), not of a ConstantSchedule or "
                          "LinearSchedule with numeric fields")
        return utils.FloatSchedule(built)
    for name in ("ConstantSchedule", "LinearSchedule"):
        if kind == f"<class '{_UTILS}.{name}'>":
            fields = {k: v for k, v in value.items() if not k.startswith(":")}
            built = _simple_schedule(name, fields)
            if built is None:
                raise _Unsafe(f"found {name} with fields {_short(fields)}")
            return built
    return None


def _simple_schedule(name: str, fields: dict[str, Any]) -> Any:
    from stable_baselines3.common import utils

    want = {"ConstantSchedule": ("val",), "LinearSchedule": ("start", "end", "end_fraction")}.get(name)
    if want is None or set(fields) != set(want):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in fields.values()):
        return None
    return getattr(utils, name)(**fields)


# The whole opcode vocabulary of a pickled TrainFreq(frequency, TrainFrequencyUnit(unit)).
_TRAIN_FREQ_OPS = {"PROTO", "FRAME", "SHORT_BINUNICODE", "BINUNICODE", "MEMOIZE", "STACK_GLOBAL",
                   "BININT", "BININT1", "BININT2", "BINGET", "TUPLE1", "TUPLE2", "REDUCE",
                   "NEWOBJ", "STOP"}


def _train_freq(value: dict[str, Any]) -> Any:
    """DQN's ``TrainFreq``: SB3 writes no readable fields for it (a NamedTuple has no
    ``__dict__``), so its two values are *read* off the pickle's opcodes with
    :func:`pickletools.genops`, a disassembler that builds no object; any opcode or name
    beyond those of ``TrainFreq(n, TrainFrequencyUnit("step"|"episode"))`` is refused."""
    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

    if value.get(":type:") != "<class 'stable_baselines3.common.type_aliases.TrainFreq'>":
        raise _Unsafe(f"found {_short(value.get(':type:'))}, not a TrainFreq")
    strings, ints, ops = [], [], set()
    try:
        raw = base64.b64decode(str(value[":serialized:"]), validate=True)
        for op, arg, _ in pickletools.genops(raw):
            ops.add(op.name)
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE"):
                strings.append(arg)
            elif op.name.startswith("BININT"):
                ints.append(arg)
    except Exception:  # any malformed stream is refused; nothing was built
        raise _Unsafe("found a TrainFreq pickle that does not disassemble") from None
    mod = "stable_baselines3.common.type_aliases"
    units = [u.value for u in TrainFrequencyUnit]
    if (ops - _TRAIN_FREQ_OPS or len(ints) != 1 or len(strings) != 4
            or strings[:3] != [mod, "TrainFreq", "TrainFrequencyUnit"] or strings[3] not in units):
        raise _Unsafe(f"found a TrainFreq pickle of opcodes {sorted(ops)} and strings "
                      f"{_short(strings)}, not TrainFreq(n, TrainFrequencyUnit(unit))")
    return TrainFreq(ints[0], TrainFrequencyUnit(strings[3]))
