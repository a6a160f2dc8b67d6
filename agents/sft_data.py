"""The SFT examples of ``reasonenv sft``: seeded procedural problems rendered exactly as
MathSteps-v0 shows them to the policy (the prompt), followed by the worked solution joined with
the env's step separator and ``<eos>`` (the response, the only tokens with a loss).

Seeds: training problems are ``source[i]`` of ``train_seed`` (1000), the validation-loss ones
of ``val_seed`` (1001); the first ``holdout_limit`` problems of each of ``holdout_seeds``
(``reasonenv eval``'s seed 0 = test, 1 = validation, 2 = spare) are removed from the training
set by question text, so no evaluated problem is ever trained on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

IGNORE = -100  # label of a position without loss (the prompt, the padding)


@dataclass
class SFTDataConfig:
    problems: str = "procedural:chained_sums?difficulty=1&terms=5"  # kind and difficulty; seeds below
    train_seed: int = 1000  # training problems: source[i] of this seed, i < num_examples
    num_examples: int = 8192  # distinct training problems; the epochs cycle through them
    val_seed: int = 1001  # validation-loss problems: source[i] of this seed
    val_examples: int = 256
    holdout_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # eval sets: never trained on
    holdout_limit: int = 500  # how many problems of each holdout seed are excluded
    template: str = "Q: {question}\nA:\n"  # the env.template the RL run uses
    chat: bool = False  # the env.chat the RL run uses
    split: str = "\n\n"  # the env's step separator ("\n\n" or "\n")


def seeded_source(spec: str, seed: int) -> Any:
    """The problem source of ``spec`` with its indexed sequence fixed by ``seed``."""
    from reasonenv.problems import make_source

    return make_source(f"{spec}{'&' if '?' in spec else '?'}seed={int(seed)}")


@dataclass(frozen=True)
class SFTExample:
    """One training example: the env's prompt, the response the policy should write, and ids.

    ``labels`` is ``IGNORE`` (-100) on the prompt and equals ``input_ids`` on the response
    (the worked solution and the final ``<eos>``).
    """

    prompt: str
    response: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def sft_example(problem: Any, tokenizer: Any, template: str, chat: bool = False,
                split: str = "\n\n") -> SFTExample:
    """The example of ``problem``: the prompt exactly as MathSteps-v0 renders and encodes it.

    The prompt and the response are encoded separately, as at RL time: the env encodes the
    prompt (``add_special_tokens=False``) and the policy samples the response tokens after it.

    Example:
        >>> from reasonenv.tokenizers import char_tokenizer
        >>> p = seeded_source("procedural:chained_sums?difficulty=1", 0)[0]
        >>> ex = sft_example(p, char_tokenizer(), "Q: {question}\\n")
        >>> ex.prompt, ex.response
        ('Q: What is 8 - 6 + 3?\\n', '8 - 6 = 2.\\n\\n2 + 3 = 5.\\n\\nThe answer is \\\\boxed{5}.')
        >>> ex.labels[len(ex.prompt) - 1], ex.labels[-1] == char_tokenizer().eos_token_id
        (-100, True)
    """
    from reasonenv.envs.prompts import PromptTemplate
    from reasonenv.problems import render_solution

    prompt = PromptTemplate(template, chat=chat).render(problem, tokenizer)
    response = render_solution(problem.metadata["solution_steps"], sep=split)
    prompt_ids = list(tokenizer.encode(prompt, add_special_tokens=False))
    response_ids = [*tokenizer.encode(response, add_special_tokens=False), tokenizer.eos_token_id]
    return SFTExample(prompt=prompt, response=response, input_ids=tuple(prompt_ids + response_ids),
                      labels=tuple([IGNORE] * len(prompt_ids) + response_ids))


def holdout_questions(data: SFTDataConfig) -> set[str]:
    """Questions of the first ``holdout_limit`` problems of every holdout seed."""
    out: set[str] = set()
    for seed in data.holdout_seeds:
        source = seeded_source(data.problems, seed)
        out.update(source[i].question for i in range(data.holdout_limit))
    return out


def build_examples(data: SFTDataConfig, tokenizer: Any, seed: int, count: int,
                   exclude: Collection[str] = ()) -> tuple[list[SFTExample], int]:
    """``source[i]`` of ``seed`` for i = 0, 1, ... until ``count`` examples, skipping questions
    in ``exclude``. Returns ``(examples, number skipped)``.

    Raises:
        ValueError: When the source cannot yield ``count`` allowed problems in ``4 * count`` tries
            (a tiny problem space, mostly held out).
    """
    source = seeded_source(data.problems, seed)
    examples: list[SFTExample] = []
    skipped = i = 0
    while len(examples) < count:
        if i >= 4 * count + 100:
            raise ValueError(f"data.problems={data.problems!r} seed={seed}: only {len(examples)} of "
                             f"{count} problems are outside the holdout sets; lower data.num_examples")
        problem = source[i]
        i += 1
        if problem.question in exclude:
            skipped += 1
            continue
        examples.append(sft_example(problem, tokenizer, data.template, data.chat, data.split))
    return examples, skipped


def collate(examples: Sequence[Any], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch: ``input_ids`` (B, T) padded with ``pad_id``, ``attention_mask`` (B, T),
    ``labels`` (B, T) with ``IGNORE`` on the padding. Accepts :class:`SFTExample` or dicts."""
    import torch

    rows = [(e.input_ids, e.labels) if isinstance(e, SFTExample) else (e["input_ids"], e["labels"])
            for e in examples]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
