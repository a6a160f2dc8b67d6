"""Fixtures shared by the agents tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def char_lm():
    """A one-layer random Llama over the char tokenizer (no download): ``(model, tokenizer)``."""
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    from reasonenv.tokenizers import char_tokenizer

    tok = char_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval(), tok
