"""Final answers: pull one out of model text, normalise it to a comparable value, compare two of them.

Every score in the project (benchmarks, teacher filtering, feedback) goes through these few pure functions,
so a gold answer and a prediction are always read the same way.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Literal, Union

# PAL's evaluation scripts score `abs(pred - target) < 1e-3`; we keep that absolute tolerance. Alone it
# breaks down for huge values: above ~5e12 one float64 step exceeds 1e-3, so two computations of the same
# GSM-Hard-sized number (its largest target is 9.3e12) could differ. REL_TOL=1e-12 (thousands of steps)
# absorbs that round-off, yet an off-by-one integer still fails for every |gold| < 1e12. Rounded answers
# such as 14053029.67 for 14053029.666… fail, as they do under PAL's rule.
ABS_TOL = 1e-3
REL_TOL = 1e-12

Normalized = Union[float, str, tuple["Normalized", ...]]

_CURRENCY = "$€£¥₹"
_MINUS = "\u2212\ufe63\uff0d"  # unicode minus signs that models and PDFs emit instead of "-"
_MINUS_TABLE = str.maketrans({c: "-" for c in _MINUS} | {"\u00a0": " ", "\u202f": " ", "\u2009": " "})
# Thousands in groups of three after a first group that is not 0 ("0,111" is never 111); a decimal comma
# after 0 ("0,111" is 0.111, as Math-Verify reads it) or before one or two digits ("2,74", "1000,99"). Anything
# else with a comma ("1,2345") is not one number.
_THOUSANDS = r"[1-9]\d{0,2}(?:,\d{3})+"
_DECIMAL_COMMA = r"0,\d+|\d+,\d{1,2}"
# A number as it appears in running text: optional sign and currency, thousands commas, decimals, exponent, a
# fraction bar and a percent sign. It may not start inside a word, right after a decimal point, or right after
# "digit," (the tail of a comma group that was not a number).
_NUMBER = (
    rf"(?<![\w.])(?<!\d,)[-+{_MINUS}]?(?:[{_CURRENCY}]\s?)?"
    rf"(?:(?:{_THOUSANDS}(?!\d)|(?:{_DECIMAL_COMMA})(?![\d,])|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?:/\d+)?%?"
)
_NUMBER_RE = re.compile(_NUMBER)
_STRICT_RES = (
    re.compile(rf"####\s*({_NUMBER})"),
    re.compile(rf"\bthe\s+(?:final\s+)?answer\s+is\s*:?\s*(?:\*\*\s*)?({_NUMBER})", re.IGNORECASE),
)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PLAIN_RE = re.compile(
    rf"(?:(?:{_THOUSANDS}|\d+)(?:\.\d*)?|\.\d+|{_DECIMAL_COMMA})(?:[eE][-+]?\d+)?")
_THOUSANDS_FORM_RE = re.compile(rf"(?:{_THOUSANDS}|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?")
_SIGNED_RE = re.compile(rf"([-+]?)\s*[{_CURRENCY}]?\s*([-+]?)\s*(.+?)\s*%?")
_UNIT_RE = re.compile(r"\s*\([^()]*[^\W\d_][^()]*\)")  # "(apples)", "(sq. ft)": brackets holding a letter
# LaTeX as models write numbers in it (MATH-style answers), rewritten to plain text, in this order:
_LATEX = (
    (re.compile(r"\{,\}"), ","),  # 14{,}916
    (re.compile(r",\\!\s*"), ","),  # 32,\! 349
    (re.compile(r"\\!"), ""),  # other negative thin spaces
    (re.compile(r"\\([$%])"), r"\1"),  # \$10, 10\%
    (re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}"), r" \1 "),  # 10 \text{ dollars}
    (re.compile(r"\\(?:left|right)\b"), ""),  # \left( ... \right)
    (re.compile(r"\\[dtc]?frac\s*\{\s*([-+]?[\d.,]+)\s*\}\s*\{\s*([\d.,]+)\s*\}"), r"\1/\2"),  # \frac{10}{9}
    (re.compile(r"\\[dtc]?frac\s*(\d)(\d)"), r"\1/\2"),  # \frac13
    (re.compile(r"(?<=\d)\\[,;: ](?=\d{3}(?!\d))"), ""),  # 1\,000: LaTeX thin space between thousands
    # thin, narrow no-break and no-break spaces as thousands separators (SI style): 1\u202f000\u202f000
    (re.compile(r"(?<=\d)[\u00a0\u202f\u2009](?=\d{3}(?!\d))"), ""),
)


def _delatex(text: str) -> str:
    """Numbers written in LaTeX or with space separators, as plain text: 14{,}916 -> 14,916, \\frac{10}{9} -> 10/9,
    \\$10 -> $10, 10\\% -> 10%, 1\u202f000 -> 1000. Text without them is returned unchanged."""
    if "\\" not in text and "{,}" not in text and not any(c in text for c in "\u00a0\u202f\u2009"):
        return text
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------------------------------------- extraction
def extract_strict(text: str | None) -> str | None:
    """The answer after the last strict marker: `#### N`, `The answer is N` (case-insensitive) or `\\boxed{...}`;
    None if there is none. LaTeX numbers come back as plain text (`\\boxed{14{,}916}` -> "14,916")."""
    if not text:
        return None
    text = _delatex(text)
    found = [(m.start(1), m.group(1).strip()) for pattern in _STRICT_RES for m in pattern.finditer(text)]
    found += _boxed(text)
    if not found:
        return None
    return max(found, key=lambda f: f[0])[1]


def _boxed(text: str) -> list[tuple[int, str]]:
    """(position, answer) of each closed \\boxed{...}: the box's number (its last one, when units or words come
    with it), else its text."""
    found = []
    for m in _BOXED_RE.finditer(text):
        depth, end = 1, m.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        if depth:
            continue  # never closed: the reply was cut off inside the box
        content = " ".join(text[m.end():end - 1].split())
        if parse_number(content) is None:
            numbers = _NUMBER_RE.findall(content)
            content = numbers[-1].strip() if numbers else content.strip("{} ")
        if content:
            found.append((m.start(), content))
    return found


def extract_flexible(text: str | None) -> str | None:
    """The last number anywhere in the text, as written (LaTeX numbers as plain text); None if there is none."""
    if not text:
        return None
    found = _NUMBER_RE.findall(_delatex(text))
    return found[-1].strip() if found else None


ExtractMode = Literal["strict", "flexible"]
EXTRACTORS: dict[str, Callable[[str | None], str | None]] = {
    "strict": extract_strict,
    "flexible": extract_flexible,
}


def extract_answer(text: str | None, mode: ExtractMode = "strict") -> str | None:
    """Run the named extractor (like lm-evaluation-harness's strict-match / flexible-extract filters)."""
    try:
        extractor = EXTRACTORS[mode]
    except KeyError:
        raise ValueError(f"unknown extraction mode {mode!r}; known: {', '.join(EXTRACTORS)}") from None
    return extractor(text)


# ----------------------------------------------------------------------------------------- normalisation
def parse_number(text: str) -> float | None:
    """A whole string read as one number ("$1,000.50", "3/4", "-(1/3)", "50%", "1e3", "72."), else None."""
    s = _delatex(text.strip()).translate(_MINUS_TABLE)
    if s.endswith(".") and len(s) > 1:
        s = s[:-1]
    m = _SIGNED_RE.fullmatch(s)
    if not m:
        return None
    negative = (m.group(1) == "-") != (m.group(2) == "-")
    body = m.group(3)
    if body.startswith("(") and body.endswith(")"):  # ASDiv writes "-(1/3)"
        value = parse_number(body[1:-1])
    elif "/" in body:
        num, _, den = body.partition("/")
        a, b = _plain(num), _plain(den)
        value = None if a is None or not b else a / b
    else:
        value = _plain(body)
    if value is None or not math.isfinite(value):
        return None
    return -value if negative else value


def _plain(s: str) -> float | None:
    s = s.strip()
    # The regex, not float(), decides what a number is: float() would also take "nan", "inf" and "1_000".
    if not _PLAIN_RE.fullmatch(s):
        return None
    # a comma that is no thousands separator is a decimal comma ("0,111", "2,74")
    return float(s.replace(",", "") if _THOUSANDS_FORM_RE.fullmatch(s) else s.replace(",", "."))


def _clean_text(text: str) -> str:
    text = _UNIT_RE.sub("", _delatex(text).translate(_MINUS_TABLE))
    return " ".join(text.split()).rstrip(". ")


def normalize_answer(value: object) -> Normalized | None:
    """A comparable value: a float for anything numeric, a canonical string otherwise, None for nothing.

    Text answers are read after dropping bracketed units ("9 (apples)" -> 9.0). ASDiv answers with several
    parts ("5 (years old); 15 (years old)") become a tuple compared part by part. Non-numeric text becomes
    lower case with collapsed whitespace. "2:3" stays the string "2:3", not 2/3: ASDiv writes clock times
    ("5:45") with the same colon, and its ratio answers are graded by exact match, so "4:6" or "2/3" do not
    match "2:3". A number with words ("18 dollars") is a string too: extraction is what isolates numbers.
    """
    if value is None:
        return None
    if isinstance(value, (numbers.Real, Decimal)):  # bool, int, float, Fraction, numpy scalars, Decimal
        try:
            number = float(value)
        except (OverflowError, ValueError):
            return None
        return number if math.isfinite(number) else None
    text = _clean_text(str(value))
    if not text:
        return None
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if len(parts) > 1:
        normalized = tuple(normalize_answer(p) for p in parts)
        return None if any(p is None for p in normalized) else normalized  # type: ignore[return-value]
    number = parse_number(text)
    if number is not None:
        return number
    return re.sub(r"\s*:\s*", ":", text.lower())


def as_number(value: object) -> float | None:
    """The answer as a float when it is a single number, else None."""
    normalized = normalize_answer(value)
    return normalized if isinstance(normalized, float) else None


def answer_text(value: object) -> str:
    """Canonical gold-answer text for a number from a dataset: 51.0 -> "51", 2.5 -> "2.5"; strings stripped."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        raise TypeError(f"expected a number or a string as answer, got {type(value).__name__}: {value!r}")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return repr(number)


# -------------------------------------------------------------------------------------------------- match
def answers_match(pred: object, gold: object, *, rel_tol: float = REL_TOL, abs_tol: float = ABS_TOL) -> bool:
    """Whether an extracted answer equals the gold one after normalisation (see ABS_TOL/REL_TOL).

    `pred` is an answer (the output of extract_answer, or a program's return value), not whole model text.
    None or an empty prediction never matches.
    """
    p, g = normalize_answer(pred), normalize_answer(gold)
    if p is None or g is None:
        return False
    return _values_match(p, g, rel_tol, abs_tol)


def _values_match(p: Normalized, g: Normalized, rel_tol: float, abs_tol: float) -> bool:
    if isinstance(p, float) and isinstance(g, float):
        return math.isclose(p, g, rel_tol=rel_tol, abs_tol=abs_tol)
    if isinstance(p, tuple) and isinstance(g, tuple):
        return len(p) == len(g) and all(_values_match(a, b, rel_tol, abs_tol) for a, b in zip(p, g))
    return isinstance(p, str) and isinstance(g, str) and p == g


def is_correct(text: str | None, gold: object, *, mode: ExtractMode = "strict") -> bool:
    """Extract an answer from model text with `mode` and compare it with the gold answer."""
    return answers_match(extract_answer(text, mode), gold)
