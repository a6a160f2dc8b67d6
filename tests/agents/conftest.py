"""Fixtures shared by the agents tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def char_lm():
    """A one-layer random Llama over the char tokenizer (no download): ``(model, tokenizer)``."""
    pytest.importorskip("torch")
    from reasonenv.testing import tiny_model
    from reasonenv.tokenizers import char_tokenizer

    tok = char_tokenizer()
    return tiny_model(tok, seed=0, num_layers=1, max_positions=512), tok
