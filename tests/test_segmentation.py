from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.segmentation import IncrementalDecoder, Segmenter, token_char_ends
from reasonenv.testing import growth_ratio

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


# --------------------------------------------------------------------- linear time
def causal_reference(seg: Segmenter, text: str, ends: list[int]) -> list[tuple[int, int, str]]:
    """The definition: ask ends_step about the whole step so far after every token."""
    out, tok_start, char_start = [], 0, 0
    for t, char_end in enumerate(ends):
        if seg.ends_step(text[char_start:char_end], t + 1 - tok_start) or t == len(ends) - 1:
            out.append((tok_start, t + 1, text[char_start:char_end]))
            tok_start, char_start = t + 1, char_end
    return out


@st.composite
def text_and_token_ends(draw):
    text = draw(TEXT)
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=len(text) + 3))
    ends = sorted(cuts) + [len(text)] if text else sorted(cuts)
    return text, ends


@settings(max_examples=200, deadline=None)
@given(case=text_and_token_ends(), split=st.sampled_from(["\n", "\n\n", "fixed:1", "fixed:3"]))
def test_segment_equals_the_causal_rule_on_any_token_boundaries(case, split):
    """Tokens of any length, empty ones included, as a byte-level BPE produces them."""
    text, ends = case
    seg = Segmenter(split)
    got = [(s.token_start, s.token_end, s.text) for s in seg.segment(text, ends)]
    assert got == causal_reference(seg, text, ends)


@settings(max_examples=200, deadline=None)
@given(case=text_and_token_ends(), split=st.sampled_from(["\n", "\n\n", "fixed:2"]))
def test_ends_step_at_equals_ends_step(case, split):
    text, ends = case
    seg = Segmenter(split)
    start_tok = start_char = checked = 0
    for t, char_end in enumerate(ends):
        whole = seg.ends_step(text[start_char:char_end], t + 1 - start_tok)
        assert seg.ends_step_at(text[:char_end], start_char, checked, t + 1 - start_tok) == whole
        checked = char_end
        if whole:
            start_tok, start_char = t + 1, char_end


def test_decoder_text_can_be_read_while_decoding(tiny_tok):
    text = "Step 1: 3 + 4 = 7.\n\nπ ≤ 5"
    d = IncrementalDecoder(tiny_tok)
    seen = []
    for t in tiny_tok.encode(text, add_special_tokens=False):
        d.push(t)
        seen.append(d.text)
    assert seen[-1] == text and all(b.startswith(a) for a, b in zip(seen, seen[1:]))
    assert d.ends[-1] == len(text)


LONG_SHAPES = {
    "no delimiter": lambda n: ("Adding the numbers one by one gives the total. " * n)[:n],
    "many short steps": lambda n: ("Step: 2 + 3 = 5.\n\n" * n)[:n],
}


@pytest.mark.parametrize("shape", list(LONG_SHAPES))
def test_segment_time_is_linear(shape):
    seg, make = Segmenter("\n\n"), LONG_SHAPES[shape]
    small, big = make(50_000), make(200_000)
    ratio = growth_ratio(lambda: seg.segment_text(small), lambda: seg.segment_text(big))
    assert ratio < 8, f"{shape}: 4x the text took {ratio:.1f}x the time"


@pytest.mark.parametrize("shape", list(LONG_SHAPES))
def test_token_char_ends_and_segment_time_is_linear(tiny_tok, shape):
    """The token path: decoding the ends, then cutting on them."""
    seg, make = Segmenter("\n\n"), LONG_SHAPES[shape]
    small, big = (tiny_tok.encode(make(n), add_special_tokens=False) for n in (10_000, 40_000))

    def run(ids):
        seg.segment(*token_char_ends(tiny_tok, ids))

    ratio = growth_ratio(lambda: run(small), lambda: run(big), repeats=3)
    assert ratio < 8, f"{shape}: 4x the tokens took {ratio:.1f}x the time"


def test_ends_step_at_time_is_linear():
    """One long step checked after every 50 characters: each check reads the new ones only.

    The prefixes are built before timing (allocating them is the caller's cost).
    """
    seg, make = Segmenter("\n\n"), LONG_SHAPES["no delimiter"]

    def prefixes(text: str) -> list[str]:
        return [text[:q] for q in range(50, len(text) + 50, 50)]

    def run(texts: list[str]) -> None:
        checked = 0
        for k, text in enumerate(texts):
            assert not seg.ends_step_at(text, 0, checked, k + 1)
            checked = len(text)

    small, big = prefixes(make(20_000)), prefixes(make(80_000))
    ratio = growth_ratio(lambda: run(small), lambda: run(big))
    assert ratio < 8, f"4x the step took {ratio:.1f}x the time"


@given(pieces=st.lists(st.sampled_from(["a", "\n", "\n\n", "b\n", "", ".\n\n", "x y"]), max_size=12),
       split=st.sampled_from(["\n", "\n\n", "fixed:3"]))
def test_ends_with_delta_agrees_with_the_causal_rule(pieces, split):
    """Token by token, the incremental check fires exactly where ends_step on the step's whole
    text so far fires."""
    seg = Segmenter(split)
    tail, text = "", ""
    for n, piece in enumerate(pieces, start=1):
        text += piece
        ended, tail = seg.ends_with_delta(tail, piece, n)
        assert ended == seg.ends_step(text, n)
        if ended:
            break
