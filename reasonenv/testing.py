"""Tiny in-process tokenizer and model for tests and examples (no download, seconds to build).

Example:
    >>> from reasonenv.testing import tiny_tokenizer
    >>> tok = tiny_tokenizer()
    >>> tok.decode(tok.encode("\\\\boxed{7}", add_special_tokens=False))
    '\\\\boxed{7}'
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable
from typing import Any

_CORPUS = [
    "Solve the problem step by step. Separate the steps with a blank line and put the final "
    "answer in \\boxed{}.\n\n",
    "What is 3 + 4? First, 3 + 4 = 7.\n\nThe answer is \\boxed{7}.\n",
    "Let x = 2. Then 2x + 1 = 5.\n\nSo \\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}.\n\n",
    "#### 18\nThe final answer is 42.\n0123456789 +-*/=()[]{}^_.,$\\sqrt{2} \\pi π ≤ é",
    "Question: Tom has 5 apples and buys 3 more. How many apples does he have?\nAnswer:",
]


@functools.lru_cache(maxsize=4)
def tiny_tokenizer(vocab_size: int = 320) -> Any:
    """A byte-level BPE tokenizer trained in-process on a small math corpus.

    Every byte is in the vocabulary, so any text round-trips. Special tokens: ``<eos>``
    (also pad) and ``<bos>``. Has a minimal chat template.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<eos>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<eos>", bos_token="<bos>", pad_token="<eos>"
    )
    hf.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    return hf


def tiny_model(tokenizer: Any | None = None, *, seed: int = 0, hidden_size: int = 32, num_layers: int = 2,
               max_positions: int = 1024) -> Any:
    """A randomly initialised Llama causal LM (2 layers by default) sized for ``tokenizer``
    (imports torch)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer or tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


def growth_ratio(small: Callable[[], Any], big: Callable[[], Any], *, repeats: int = 5) -> float:
    """How many times more CPU time ``big()`` takes than ``small()``: best of ``repeats`` each.

    For tests of time complexity on a shared, noisy machine: the two calls alternate (so a
    slow spell hits both), the time counted is this process's CPU time (waiting for a core
    does not count), the garbage collector is paused as in :mod:`timeit`, and the ratio of the
    two best times is returned. Run ``big`` on k times the input of ``small`` and compare with
    k (linear) or k**2 (quadratic); never compare with a wall-clock bound. Work done in other
    processes (a grading worker) is not counted.

    Example:
        >>> ratio = growth_ratio(lambda: sum(range(10_000)), lambda: sum(range(40_000)))
        >>> 1 < ratio < 16
        True
    """
    best_small = best_big = float("inf")
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.process_time()
            small()
            t1 = time.process_time()
            big()
            t2 = time.process_time()
            best_small, best_big = min(best_small, t1 - t0), min(best_big, t2 - t1)
    finally:
        if enabled:
            gc.enable()
    return best_big / max(best_small, 1e-9)
