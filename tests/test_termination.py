"""The final-answer rule: same answers as its regex definition, incremental, linear time."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonenv.envs.termination import FinalAnswerScan, final_answer_end, has_final_answer
from reasonenv.grading.extract import matching_brace
from reasonenv.testing import growth_ratio

# The rule as it was first written: four regexes and a brace match. Exact, but the regexes
# backtrack (cubic time on "the answer is x the answer is x ..." with no newline), so it is
# only run here on short texts.
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_SPACE = re.compile(r"\\boxed +([^\s{$][^\s$]*)(?=[\s$])")
_PHRASE = re.compile(r"(?i)\bthe (?:final )?answer is\b[^\n]*\S[^\n]*\n")
_HASHES = re.compile(r"####[ \t]*\S[^\n]*\n")


def reference_end(text: str) -> int | None:
    ends = []
    m = _BOX.search(text)
    if m is not None:
        close = matching_brace(text, m.end() - 1)
        if close is not None:
            ends.append(close + 1)
    for pat in (_BOX_SPACE, _PHRASE, _HASHES):
        m = pat.search(text)
        if m is not None:
            ends.append(m.end())
    return min(ends) if ends else None


PIECES = ["\\boxed", "\\fbox", "\\boxe", "{", "}", "\\{", "\\}", "\\", " ", "  ", "\t", "\n", "\r",
          "\u00a0", "$", "5", "x", "d", "e", "is", "n't", "The answer is", "the final answer is",
          "ANSWER IS", "the ", "####", "#", "\\boxed{5}", "\\boxed 5"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=TEXT)
def test_matches_the_regex_definition(text):
    assert final_answer_end(text) == reference_end(text)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, cuts=st.lists(st.integers(0, 200), max_size=6))
def test_scanning_in_pieces_equals_scanning_each_prefix(text, cuts):
    scan = FinalAnswerScan()
    for q in sorted(c % (len(text) + 1) for c in cuts) + [len(text)]:
        scan = scan.advance(text[:q])
        assert scan.end == reference_end(text[:q]), q


@settings(max_examples=100, deadline=None)
@given(text=TEXT)
def test_scanning_one_character_at_a_time(text):
    scan = FinalAnswerScan()
    for q in range(len(text) + 1):
        scan = scan.advance(text[:q])
        assert scan.end == reference_end(text[:q]), q


@pytest.mark.parametrize(
    "pieces,end",
    [
        (["So \\boxed{\\frac{1", "}{2}", "} done"], 22),  # a box closed two steps later
        (["\\box", "ed", "  ", "{7}"], 11),  # the marker itself cut across steps
        (["\\boxed{\\", "}", "}"], 10),  # the escape reaches into the next step
        (["The answer ", "is 5", ".", "\n"], 17),  # the line ends in a later step
        (["the answer is", "n't 4\n", "#### 4", "\n"], 26),  # "isn't" is not the phrase
        (["#### ", " \t", "9", " x", "\n"], 11),
        (["\\boxed ", "  x", "y", " "], 11),
    ],
)
def test_markers_that_span_steps(pieces, end):
    scan, text = FinalAnswerScan(), ""
    for p in pieces:
        text += p
        scan = scan.advance(text)
        assert scan.end == reference_end(text)
    assert scan.end == end


def test_advance_is_a_value_and_refuses_a_shorter_text():
    first = FinalAnswerScan().advance("x \\boxed{")
    second = first.advance("x \\boxed{5}")
    assert (first.end, second.end) == (None, 11)
    assert first.advance("x \\boxed{6}").end == 11  # ``first`` was not changed by the call
    with pytest.raises(ValueError, match="text so far"):
        first.advance("x")
    assert has_final_answer("#### 3\n") and not has_final_answer("#### 3")


# Texts on which the regex definition backtracks, and ones that keep a marker open.
PATHOLOGICAL = {
    "phrase repeated, no newline": lambda n: ("the answer is x " * n)[:n],
    "one long answer line": lambda n: "The answer is " + "x" * n,
    "answer line still blank": lambda n: "The answer is" + " \t" * (n // 2),
    "a run of hashes": lambda n: "#" * n,
    "open box with braces": lambda n: "\\boxed{" + ("{a}" * n)[:n],
    "open box with escapes": lambda n: "\\boxed{" + ("\\{" * n)[:n],
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_whole_text_time_is_linear(name):
    make = PATHOLOGICAL[name]
    small, big = make(4_000), make(16_000)
    ratio = growth_ratio(lambda: final_answer_end(small), lambda: final_answer_end(big))
    assert ratio < 8, f"{name}: 4x the text took {ratio:.1f}x the time"


def _scan_prefixes(prefixes: list[str]) -> None:
    scan = FinalAnswerScan()
    for text in prefixes:
        scan = scan.advance(text)


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_step_by_step_time_is_linear(name):
    """Fed 100 characters at a time, each step reads only its new characters.

    The prefixes are built before timing: allocating them is the caller's cost, not the scan's.
    """
    make = PATHOLOGICAL[name]
    small, big = make(20_000), make(80_000)
    small_prefixes = [small[:q] for q in range(100, len(small) + 100, 100)]
    big_prefixes = [big[:q] for q in range(100, len(big) + 100, 100)]
    ratio = growth_ratio(lambda: _scan_prefixes(small_prefixes), lambda: _scan_prefixes(big_prefixes))
    assert ratio < 8, f"{name}: 4x the text took {ratio:.1f}x the time"
