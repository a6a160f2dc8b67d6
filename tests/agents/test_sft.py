"""``reasonenv sft``: the examples are exactly what the env shows the policy, a few steps lower
the loss, the folder loads everywhere a model folder should, and a second run is a cache hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from reasonenv.agents.config import ConfigError, load_config  # noqa: E402
from reasonenv.agents.sft import load_sft_config, run_sft  # noqa: E402
from reasonenv.agents.sft_data import (  # noqa: E402
    IGNORE,
    SFTExample,
    build_examples,
    collate,
    holdout_questions,
    seeded_source,
    sft_example,
)

ROOT = Path(__file__).resolve().parents[2]
SFT_YAML = ROOT / "configs" / "tiny" / "sft.yaml"
GRPO_YAML = ROOT / "configs" / "tiny" / "grpo.yaml"
EVAL_YAML = ROOT / "configs" / "tiny" / "eval.yaml"
# A model and a data set small enough for a few seconds: 2 layers, d=32, 3-term sums.
TINY = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "model.num_kv_heads=2",
        "model.intermediate_size=64", "model.max_positions=256",
        "data.problems=procedural:chained_sums?difficulty=1", "data.num_examples=256",
        "data.val_examples=32", "data.holdout_limit=50", "train.steps=40", "train.batch_size=16",
        "train.warmup_steps=5", "train.lr=1e-2", "run.log_every=5", "run.progress=false"]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads wait for each other."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_cfg(out: Path, *more: str):
    return load_sft_config(SFT_YAML, [*TINY, f"run.out_dir={out}", *more])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sft") / "model"
    cfg = tiny_cfg(out)
    return cfg, run_sft(cfg)


# ------------------------------------------------------------------------------------ config


def test_the_shipped_configs_load_and_agree_on_the_prompt_and_the_task():
    sft = load_sft_config(SFT_YAML)
    grpo = load_config(GRPO_YAML)
    assert grpo.model.name == sft.run.out_dir
    assert (grpo.env.template, grpo.env.chat) == (sft.data.template, sft.data.chat)
    assert grpo.env.split in (None, sft.data.split)
    assert grpo.env.problems.split("?")[0] == sft.data.problems.split("?")[0]
    kind = seeded_source(sft.data.problems, 0)
    rl = seeded_source(grpo.env.problems, 0)
    assert (rl.kind, rl.difficulty) == (kind.kind, kind.difficulty)
    import yaml

    preset = yaml.safe_load(EVAL_YAML.read_text())
    assert preset["prompt"] == sft.data.template and preset["chat"] is sft.data.chat
    (bench,) = preset["benchmarks"]
    ev = seeded_source(bench.split("&seed=")[0], 0)
    assert (ev.kind, ev.difficulty) == (kind.kind, kind.difficulty)
    assert int(bench.split("seed=")[1]) in sft.data.holdout_seeds


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "unknown key(s) ['stepz'] at train"),
    ("train.steps=0", "train.steps must be >= 1, got 0"),
    ("train.schedule=warm", "train.schedule='warm'"),
    ("data.problems=procedural:chained_sums?seed=3", "must not set seed="),
    ("data.problems=gsm8k", "must be a procedural source"),
    ("data.val_seed=0", "must be distinct"),
    ("data.template=no question here", "data: prompt template must contain"),
    ("model.num_heads=3", "model.hidden_size=128 is not a multiple of model.num_heads=3"),
])
def test_bad_values_fail_naming_the_field(override, message):
    with pytest.raises(ConfigError) as e:
        load_sft_config(SFT_YAML, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_hash_covers_what_sets_the_weights_and_not_where_they_go(tmp_path):
    base = tiny_cfg(tmp_path / "a")
    assert tiny_cfg(tmp_path / "b", "run.log_every=7").config_hash() == base.config_hash()
    for change in ("train.steps=41", "data.train_seed=5", "model.hidden_size=48", "data.template=A {question}"):
        assert tiny_cfg(tmp_path / "a", change).config_hash() != base.config_hash(), change


# -------------------------------------------------------------------------------------- data


def test_the_example_prompt_is_the_env_prompt_and_its_response_solves_the_problem():
    import gymnasium as gym

    import reasonenv  # noqa: F401  (registers the envs)
    from reasonenv.tokenizers import char_tokenizer

    cfg = load_sft_config(SFT_YAML)
    tok = char_tokenizer()
    problems = [seeded_source(cfg.data.problems, 1)[i] for i in range(3)]
    env = gym.make("reasonenv/MathSteps-v0", problems=problems, tokenizer=tok,
                   prompt={"template": cfg.data.template, "chat": cfg.data.chat})
    for p in problems:
        ex = sft_example(p, tok, cfg.data.template, cfg.data.chat, cfg.data.split)
        obs, _ = env.reset(options={"problem": p})
        assert ex.prompt == obs
        prompt_ids = list(env.unwrapped.state.prompt_ids)
        assert list(ex.input_ids[: len(prompt_ids)]) == prompt_ids
        # The response, played step by step as the policy would write it, is graded correct.
        steps = ex.response.split(cfg.data.split)
        for k, step in enumerate(steps):
            text = step if k == len(steps) - 1 else step + cfg.data.split
            obs, reward, terminated, truncated, _ = env.step(text)
        assert terminated and not truncated and reward == 1.0
        assert obs == ex.prompt + ex.response


def test_labels_are_masked_on_the_prompt_and_end_with_eos():
    from reasonenv.tokenizers import char_tokenizer

    tok = char_tokenizer()
    p = seeded_source("procedural:chained_sums?difficulty=2", 1)[0]
    ex = sft_example(p, tok, "Q: {question}\nA:\n")
    n = len(tok.encode(ex.prompt, add_special_tokens=False))
    assert ex.labels[:n] == (IGNORE,) * n
    assert ex.labels[n:] == ex.input_ids[n:]
    assert ex.input_ids[-1] == tok.eos_token_id
    assert tok.decode(ex.input_ids[n:-1]) == ex.response
    assert ex.response.count("\n\n") == len(p.metadata["solution_steps"]) - 1


def test_collate_pads_right_and_ignores_the_padding():
    a = SFTExample("", "", (5, 6, 7), (IGNORE, 6, 7))
    b = SFTExample("", "", (8, 9), (IGNORE, 9))
    t = collate([a, b], pad_id=0)
    assert t["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert t["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert t["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, 9, IGNORE]]


def test_training_problems_exclude_the_holdout_sets():
    from reasonenv.tokenizers import char_tokenizer

    # 3-term single-digit sums: a small space, so the eval seeds overlap the training seed.
    cfg = load_sft_config(SFT_YAML, ["data.problems=procedural:chained_sums?difficulty=1",
                                     "data.holdout_limit=200"])
    held = holdout_questions(cfg.data)
    examples, skipped = build_examples(cfg.data, char_tokenizer(), cfg.data.train_seed, 300, held)
    assert skipped > 0 and len(examples) == 300
    questions = {e.prompt for e in examples}
    assert not any(cfg.data.template.format(question=q) in questions for q in held)


# ---------------------------------------------------------------------------------- training


def test_a_few_steps_lower_the_loss(trained):
    _, result = trained
    s = result.summary
    assert not result.skipped
    assert s["final_loss"] < 0.7 * s["first_loss"], s
    rows = [json.loads(line) for line in (result.out_dir / "sft_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r][:2] == [1, 5]


def test_the_folder_loads_in_transformers_and_hfpolicy(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonenv.agents.hf import HFPolicy, HFPolicyConfig

    cfg, result = trained
    model = AutoModelForCausalLM.from_pretrained(result.out_dir)
    tok = AutoTokenizer.from_pretrained(result.out_dir)
    assert type(model).__name__ == "LlamaForCausalLM" and len(tok) == model.config.vocab_size
    assert sum(p.numel() for p in model.parameters()) == result.summary["parameters"]
    p = seeded_source(cfg.data.problems, 1)[0]
    prompt = sft_example(p, tok, cfg.data.template).prompt
    policy = HFPolicy(str(result.out_dir), config=HFPolicyConfig(temperature=0.0, max_step_tokens=24))
    (action,) = policy.act([prompt], [0])
    assert action["token_ids"] and len(action["logprobs"]) == len(action["token_ids"])


def test_the_folder_evaluates_with_reasonenv_eval(trained, capsys):
    from reasonenv.cli import main

    cfg, result = trained
    code = main(["eval", "--policy", str(result.out_dir), "--preset", str(EVAL_YAML),
                 "--benchmark", f"{cfg.data.problems}&seed=1", "--n", "2", "--limit", "2",
                 "--max-tokens", "48", "--no-progress", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["overall"]["n_problems"] == 2 and out["overall"]["n_samples"] == 4, out
    assert {"avg@n", "pass@2"} <= set(out["overall"]["metrics"]), out


def test_a_second_run_with_the_same_config_does_not_retrain(trained, monkeypatch):
    import transformers

    cfg, result = trained
    weights = result.out_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("retrained")

    monkeypatch.setattr(transformers.Trainer, "train", boom)
    again = run_sft(tiny_cfg(result.out_dir, "run.log_every=3"))  # run.* is not hashed
    assert again.skipped and again.summary == result.summary
    assert weights.stat().st_mtime_ns == before
    with pytest.raises(AssertionError, match="retrained"):
        run_sft(tiny_cfg(result.out_dir, "train.steps=39"))  # another config trains
    with pytest.raises(AssertionError, match="retrained"):
        run_sft(tiny_cfg(result.out_dir, "run.force=true"))


def test_training_is_deterministic(tmp_path, trained):
    from safetensors.torch import load_file

    cfg, result = trained
    again = run_sft(tiny_cfg(tmp_path / "again"))
    a = load_file(result.out_dir / "model.safetensors")
    b = load_file(again.out_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_folder_of_other_files_is_not_overwritten(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not an SFT model"):
        run_sft(tiny_cfg(out))
    assert (out / "notes.txt").read_text() == "keep"


def test_the_command_prints_a_summary_and_fails_in_one_line(tmp_path, capsys):
    from reasonenv.cli import main

    assert main(["sft", "--config", str(SFT_YAML), "--set", "train.bogus=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reasonenv sft: unknown key(s) ['bogus']") and "\n" not in err
    args = ["sft", "--config", str(SFT_YAML), *[x for o in TINY for x in ("--set", o)],
            "--set", f"run.out_dir={tmp_path / 'cli'}", "--set", "train.steps=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 steps x 16" in out and "saved" in out
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_snapshot_of_a_constant_rate_run_is_the_model_of_a_shorter_run(tmp_path):
    from safetensors.torch import load_file

    const = ["train.schedule=constant", "train.steps=6", "train.warmup_steps=2"]
    long = run_sft(tiny_cfg(tmp_path / "long", *const, "run.snapshots=[3]"))
    short = run_sft(tiny_cfg(tmp_path / "short", *const, "train.steps=3"))
    snap = long.out_dir / "step-3"
    a, b = load_file(snap / "model.safetensors"), load_file(short.out_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((snap / "sft.json").read_text())["config_hash"] == short.config_hash
    with pytest.raises(ConfigError, match="run.snapshots needs train.schedule=constant"):
        tiny_cfg(tmp_path / "x", "run.snapshots=[3]", "train.schedule=cosine")
