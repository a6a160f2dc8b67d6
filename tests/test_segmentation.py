from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.segmentation import IncrementalDecoder, Segmenter, token_char_ends

TEXT = st.text(alphabet=st.sampled_from(list("ab .\n$\\{}1π")), max_size=80)


def naive_split(text: str, delim: str) -> list[str]:
    """Reference: scan left to right, cut right after each delimiter occurrence."""
    out, start, i = [], 0, 0
    while i < len(text):
        if text[start : i + 1].endswith(delim):
            out.append(text[start : i + 1])
            start = i + 1
        i += 1
    if start < len(text):
        out.append(text[start:])
    return out


@pytest.mark.parametrize("split,delim", [("\n\n", "\n\n"), ("\n", "\n"), ("double_newline", "\n\n")])
@given(text=TEXT)
def test_char_segmentation_matches_reference(split, delim, text):
    steps = Segmenter(split).segment_text(text)
    assert [s.text for s in steps] == naive_split(text, delim)
    assert "".join(s.text for s in steps) == text
    if steps:
        assert steps[-1].char_end == len(text)


def test_three_newlines_leave_one_for_the_next_step():
    steps = Segmenter("\n\n").segment_text("a\n\n\nb")
    assert [s.text for s in steps] == ["a\n\n", "\nb"]


def test_merged_token_ends_step():
    # tokens: "ab", ".\n\n", "c", " d", "\n\nx"  -> the merged tokens end the steps
    text = "ab.\n\nc d\n\nx"
    ends = [2, 5, 6, 8, 11]
    steps = Segmenter("\n\n").segment(text, ends)
    assert [(s.token_start, s.token_end) for s in steps] == [(0, 2), (2, 5)]
    assert steps[1].text == "c d\n\nx"  # boundary token holds the next step's first char


def test_fixed_token_steps():
    text = "abcdefg"
    steps = Segmenter("fixed:3").segment(text, list(range(1, 8)))
    assert [s.text for s in steps] == ["abc", "def", "g"]
    assert steps[-1].token_end == 7
    with pytest.raises(ValueError, match="fixed"):
        Segmenter("fixed:3").segment_text(text)


@pytest.mark.parametrize("bad", ["tab", "fixed:0", "fixed:x", ""])
def test_bad_split_names_the_value(bad):
    with pytest.raises(ValueError, match="split"):
        Segmenter(bad)


def test_token_char_ends_round_trip(tiny_tok):
    text = "Step 1: 3 + 4 = 7.\n\nπ ≤ 5 héllo\n\n\nThe answer is \\boxed{42}."
    ids = tiny_tok.encode(text, add_special_tokens=False)
    decoded, ends = token_char_ends(tiny_tok, ids)
    assert decoded == text
    assert len(ends) == len(ids) and ends[-1] == len(text)
    assert all(a <= b for a, b in zip(ends, ends[1:]))
    # each token's text, decoded alone, matches its span (byte-level BPE is prefix-stable)
    starts = [0] + ends[:-1]
    pieces = [decoded[s:e] for s, e in zip(starts, ends)]
    assert "".join(pieces) == text


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab .\n{}1πé≤\\")), min_size=1, max_size=60))
def test_incremental_decoder_equals_full_decode(tiny_tok, text):
    ids = tiny_tok.encode(text, add_special_tokens=False)
    d = IncrementalDecoder(tiny_tok)
    for t in ids:
        d.push(t)
    assert d.text == tiny_tok.decode(ids) == text


@settings(max_examples=40, deadline=None)
@given(text=TEXT)
def test_token_segmentation_is_causal(tiny_tok, text):
    """Pushing tokens one at a time and asking ends_step finds exactly segment()'s boundaries."""
    if not text:
        return
    seg = Segmenter("\n\n")
    ids = tiny_tok.encode(text, add_special_tokens=False)
    decoded, ends = token_char_ends(tiny_tok, ids)
    whole = [(s.token_start, s.token_end) for s in seg.segment(decoded, ends)]
    d = IncrementalDecoder(tiny_tok)
    got, start_tok, start_char = [], 0, 0
    for k, t in enumerate(ids):
        d.push(t)
        if seg.ends_step(d.text[start_char:], k + 1 - start_tok) or k == len(ids) - 1:
            got.append((start_tok, k + 1))
            start_tok, start_char = k + 1, len(d.text)
    assert got == whole
