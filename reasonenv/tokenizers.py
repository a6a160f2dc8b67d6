"""A built-in character-level tokenizer: one token per character, no download.

The vocabulary is the characters the procedural problems, the prompt templates and the worked
solutions use, padded out to every printable ASCII character: letters, digits, ``+ - * / = ( )``,
LaTeX punctuation (``\\ { } $ ^ _``), space, tab, newline, and the ``÷`` the fractions problems
write; 102 tokens in all. A character outside the vocabulary (``π``, ``é``, an emoji) becomes
``<unk>`` and does not come back on decoding: the vocabulary is kept small on purpose (it is the
action space of ``MathTokens-v0`` and the output layer of the tiny testbed model), so there is no
byte fallback.

It is a real :class:`transformers.PreTrainedTokenizerFast` built in-process with the
``tokenizers`` library, so it works with HF models, ``save_pretrained`` / ``from_pretrained``
(including through ``AutoTokenizer``) and has a minimal chat template. ``transformers`` is
imported only when :func:`char_tokenizer` is first called; importing this module stays light.

Example:
    >>> tok = char_tokenizer()
    >>> ids = tok.encode("3 + 4 = 7.\\n\\nThe answer is \\\\boxed{7}.", add_special_tokens=False)
    >>> len(ids), tok.decode(ids)
    (36, '3 + 4 = 7.\\n\\nThe answer is \\\\boxed{7}.')
    >>> tok.convert_ids_to_tokens(tok.encode("π", add_special_tokens=False))
    ['<unk>']
"""

from __future__ import annotations

import functools
from typing import Any

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: Special tokens, ids 0-3 (pad is 0, the value MathTokens-v0 pads observations with).
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
#: Ordinary characters, ids 4 onwards: tab, newline, printable ASCII, then the division sign.
CHARACTERS: tuple[str, ...] = ("\t", "\n", *(chr(c) for c in range(32, 127)), "÷")
#: ``<|role|>`` headers, one message per block; the generation prompt opens the assistant's.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def vocabulary() -> dict[str, int]:
    """Token string to id: the special tokens first, then :data:`CHARACTERS`.

    Example:
        >>> v = vocabulary()
        >>> len(v), v["<pad>"], v["<eos>"], v["\\n"]
        (102, 0, 2, 5)
    """
    return {token: i for i, token in enumerate((*SPECIAL_TOKENS, *CHARACTERS))}


@functools.lru_cache(maxsize=1)
def char_tokenizer() -> Any:
    """The character-level fast tokenizer (built once per process, then cached).

    No special token is added by ``encode``/``__call__`` (the env encodes prompts with
    ``add_special_tokens=False`` anyway); ``<eos>`` ends a response, ``<pad>`` (id 0) pads.
    The instance is shared: copy it (``copy.deepcopy``) before changing its settings.

    Returns:
        A :class:`transformers.PreTrainedTokenizerFast`.

    Example:
        >>> tok = char_tokenizer()
        >>> tok.eos_token, tok.pad_token_id, len(tok)
        ('<eos>', 0, 102)
        >>> tok.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False,
        ...                         add_generation_prompt=True)
        '<|user|>\\n2+2?\\n<|assistant|>\\n'
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    # BPE without merges and without a pre-tokenizer is exactly one token per character.
    model = models.BPE(vocab=vocabulary(), merges=[], unk_token=UNK, fuse_unk=False)
    backend = Tokenizer(model)
    backend.decoder = decoders.Fuse()  # concatenate the characters back, no spaces added
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,  # keep " ." and " ," exactly as written
        chat_template=CHAT_TEMPLATE,
    )
    return tokenizer
