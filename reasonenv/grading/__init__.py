"""Answer grading for math reasoning: extraction, normalisation and an equivalence ladder.

Import is cheap (no sympy, no torch): the symbolic step runs in worker processes that are only
started the first time a comparison needs them.

Example:
    >>> from reasonenv.grading import grade, extract_answer
    >>> extract_answer(r"First \\boxed{2}, no wait: \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> grade(r"\\boxed{0.5}", r"\\frac12").correct
    True
"""

from reasonenv.grading.extract import extract_answer, has_final_answer
from reasonenv.grading.grader import Grader, check_timeout, default_grader, grade, grade_batch
from reasonenv.grading.normalize import normalize
from reasonenv.grading.verdict import REASONS, Verdict

__all__ = [
    "REASONS",
    "Grader",
    "Verdict",
    "check_timeout",
    "default_grader",
    "extract_answer",
    "grade",
    "grade_batch",
    "has_final_answer",
    "normalize",
]
