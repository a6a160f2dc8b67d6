"""The built-in character tokenizer, and MathTokens-v0 built on it with no arguments."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import reasonenv  # noqa: F401  (registers the envs)
from reasonenv.envs.prompts import PLAIN_TEMPLATE, PromptTemplate
from reasonenv.problems import KINDS, ProceduralSource, render_solution
from reasonenv.tokenizers import CHARACTERS, SPECIAL_TOKENS, char_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def procedural_texts() -> list[str]:
    """Prompts (both templates) and both solutions of problems of every kind and level."""
    texts = []
    for kind, level in itertools.product(KINDS, range(1, 6)):
        for problem in itertools.islice(ProceduralSource(kind, level, seed=level), 8):
            for template in (PromptTemplate(), PromptTemplate(PLAIN_TEMPLATE)):
                texts.append(template.render(problem))
            for key in ("solution_steps", "corrupted_steps"):
                texts.append(render_solution(problem.metadata[key]))
                texts.append(render_solution(problem.metadata[key], sep="\n"))
    return texts


def test_every_procedural_prompt_and_solution_round_trips_one_token_per_character() -> None:
    tok = char_tokenizer()
    unk = tok.unk_token_id
    for text in procedural_texts():
        ids = tok.encode(text, add_special_tokens=False)
        assert len(ids) == len(text), text
        assert unk not in ids, text
        assert tok.decode(ids) == text


def test_vocabulary_layout_and_unknown_characters() -> None:
    tok = char_tokenizer()
    assert len(tok) == len(SPECIAL_TOKENS) + len(CHARACTERS) == 102
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.encode("", add_special_tokens=False) == []
    assert tok.encode("ab", add_special_tokens=True) == tok.encode("ab", add_special_tokens=False)
    every = " ".join(CHARACTERS) + " can't , . ? ! 's"  # what HF's space clean-up would eat
    assert tok.decode(tok.encode(every, add_special_tokens=False)) == every
    ids = tok.encode("π ≤ 2 ππ", add_special_tokens=False)
    # one <unk> per unknown character, so token and character positions stay aligned
    assert tok.convert_ids_to_tokens(ids) == ["<unk>", " ", "<unk>", " ", "2", " ", "<unk>", "<unk>"]
    assert char_tokenizer() is tok  # cached


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    sample = "\n\n".join(procedural_texts()[:40]) + " <eos>"
    for loader in (AutoTokenizer, PreTrainedTokenizerFast):
        loaded = loader.from_pretrained(tmp_path)
        assert loaded.get_vocab() == tok.get_vocab()
        assert loaded.encode(sample, add_special_tokens=False) == tok.encode(sample,
                                                                            add_special_tokens=False)
        ids = loaded.encode(sample, add_special_tokens=False)
        assert loaded.decode(ids) == sample
        assert ids[-1] == loaded.eos_token_id  # "<eos>" in text is the special token
        assert loaded.all_special_tokens == tok.all_special_tokens
        messages = [{"role": "user", "content": "What is 2 + 3?"}]
        assert loaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == (
            "<|user|>\nWhat is 2 + 3?\n<|assistant|>\n")


def test_no_argument_token_env_passes_gymnasiums_checker() -> None:
    env = gym.make("reasonenv/MathTokens-v0")
    assert env.action_space.n == 102
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)


def test_no_argument_token_env_passes_sb3s_checker() -> None:
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = gym.make("reasonenv/MathTokens-v0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_checker.check_env(env.unwrapped, warn=True)


def test_stepping_the_worked_solution_character_by_character_is_rewarded() -> None:
    env = gym.make("reasonenv/MathTokens-v0", problems="procedural:mixed?difficulty=2")
    tok = env.unwrapped.tokenizer
    for seed in range(3):
        outcomes = {}
        for key in ("solution_steps", "corrupted_steps"):
            env.reset(seed=seed)
            problem = env.unwrapped.state.problem
            ids = tok.encode(render_solution(problem.metadata[key]), add_special_tokens=False)
            ends = 0
            for token in ids:
                _, reward, terminated, truncated, info = env.step(token)
                ends += info["step_end"]
                if terminated or truncated:
                    break
            assert terminated and not truncated
            assert ends == len(problem.metadata[key])
            outcomes[key] = info["verdict"]["correct"]
        assert outcomes == {"solution_steps": True, "corrupted_steps": False}


