"""Answers as real models write them: \\boxed{}, LaTeX numbers, thin and no-break spaces, decimal commas.

The cases are taken from peers' own test tables (read, not copied as code):
- Math-Verify (huggingface/Math-Verify, tests/test_all.py): test_number_extraction ("0,111" == 0.111, "1000,99" ==
  1000.99, "1,22" == 1.22, "$1,000.99"), test_simple_fraction_notation ("\\frac{10}{9}" == 10/9, "-\\frac{10}{9}"),
  test_latex_notation (\\dfrac, \\tfrac, \\left( \\right), \\boxed{\\frac{1}{3}}, \\frac{1}{3} \\text{meters}), the
  MATH answer "\\boxed{14{,}916}", "\\boxed{28\\%}".
- NeMo-Skills' math grader normalisation notes: 5,\\!460 -> 5460, 14{,}916 -> 14916, \\$4 -> 4, 50\\% -> 50.
- MATH solutions as lm-evaluation-harness's minerva_math task scores them: "32,\\! 349", "\\$10", "10\\%".
"""

import pytest

from fdd_core.answers import answers_match, extract_flexible, extract_strict, is_correct, parse_number

# model text, gold: strict extraction must read the boxed answer
BOXED = [
    (r"Therefore, $\boxed{14{,}916}$ is our answer.", 14916),
    (r"The total is \boxed{32,\! 349}.", 32349),
    (r"So she pays \boxed{\$10}.", 10),
    (r"The loss is $\boxed{28\%}$.", 28),
    (r"$f(-2)+f(-1)=\boxed{\frac{14}{3}}$", 14 / 3),
    (r"\boxed{\dfrac{1}{3}}", 1 / 3),
    (r"\boxed{-\frac{10}{9}}", -10 / 9),
    (r"\boxed{\left( \frac{1}{3} \right)}", 1 / 3),
    (r"\boxed{5,\!460}", 5460),
    (r"The answer is 12, or in a box: \boxed{18}", 18),  # the last marker wins
    (r"\boxed{18} is wrong; the answer is 20", 20),
    (r"\boxed{10 \text{ dollars}}", 10),
    ("Step 1: 2+2=4. \\boxed{4}", 4),
]


@pytest.mark.parametrize(("text", "gold"), BOXED)
def test_boxed_is_a_strict_marker(text, gold):
    assert is_correct(text, gold, mode="strict"), extract_strict(text)


def test_boxed_nested_braces_and_unclosed():
    assert answers_match(extract_strict(r"\boxed{\frac{1}{2}} apples"), 0.5)
    assert extract_strict(r"the box \boxed{12 is never closed") is None


# model text, gold: the last number, read through LaTeX and separators
FLEXIBLE = [
    (r"she has $14{,}916$ stamps", 14916),
    (r"that makes 32,\! 349 people", 32349),
    (r"it costs \$10", 10),
    (r"a rise of 10\%", 10),
    (r"each gets $\frac{10}{9}$ of a pie", 10 / 9),
    (r"each gets $-\frac{10}{9}$", -10 / 9),
    ("a population of 1\u202f000\u202f000", 1_000_000),  # narrow no-break spaces (SI, French)
    ("paid 12\u00a0500 euros", 12500),  # no-break space
    ("about 3\u2009250 km", 3250),  # thin space
    ("0,111", 0.111),
    ("Soucis : 2,74 $ a..", 2.74),
]


@pytest.mark.parametrize(("text", "gold"), FLEXIBLE)
def test_flexible_reads_latex_and_separators(text, gold):
    assert is_correct(text, gold, mode="flexible"), extract_flexible(text)


def test_zero_comma_is_never_thousands():
    assert not is_correct("0,111", 111, mode="flexible")
    assert parse_number("0,111") == pytest.approx(0.111)


@pytest.mark.parametrize(("text", "value"), [
    ("1000,99", 1000.99), ("1,22", 1.22), ("0,5", 0.5), (r"\$4", 4.0), (r"50\%", 50.0), (r"14{,}916", 14916.0),
    (r"\frac{10}{9}", 10 / 9), (r"-\frac{10}{9}", -10 / 9), (r"5,\!460", 5460.0), ("1\u202f234", 1234.0),
    ("1,234", 1234.0), ("1,234,567.5", 1234567.5),
])
def test_parse_number_reads_real_answers(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["1,2345", "1 2 3", "12 345", "AZYUK2A"])
def test_not_one_number(text):
    assert parse_number(text) is None


def test_gold_in_latex_matches_plain_prediction():
    assert answers_match("14916", r"14{,}916")
    assert answers_match("1.1111111111", r"\frac{10}{9}", abs_tol=1e-3)
    assert not answers_match("2", r"\frac{10}{9}")
