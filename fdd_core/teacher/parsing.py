"""Find the question and the program in a free-form teacher reply, never raising.

Replies come with chatter, markdown and sometimes several code blocks; a reply that cannot be
parsed becomes a ParsedReply with empty fields, the raw text and the reason (distilabel's rule:
a parse failure is a row, not a crashed batch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A reply's code block must be closed (an open one means the reply was cut off); the student's generations
# are cut differently (student/prompting.py: program_from_generation).
_OPEN_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n", re.I)
_FENCE = re.compile(_OPEN_FENCE.pattern + r"(.*?)```", re.S | re.I)
_QUESTION = re.compile(r"^[ \t>*#_]*(?:new\s+)?(?:question|problem)[ \t*_]*:[ \t*_]*(.*)$", re.I | re.M)
_ANSWERS = re.compile(r"^\s*(ans\s*=|def\s+solution\s*\()", re.M)


@dataclass(frozen=True)
class ParsedReply:
    question: str  # "" for solve replies, and when none was found
    program: str  # "" when none was found
    raw: str
    reason: str | None = None  # why the reply is unusable; None when it parsed

    @property
    def ok(self) -> bool:
        return self.reason is None


def program_from_reply(text: str) -> tuple[str, str | None]:
    """The program of a reply and None, or "" and the reason there is none.

    Of several blocks, the last one that assigns `ans` or defines `solution()` wins: models often
    show a scratch block first and the final program last.
    """
    blocks = [b.strip("\n") for b in _FENCE.findall(text)]
    if not blocks:
        if _OPEN_FENCE.search(text):
            return "", "code block not closed (reply cut off?)"
        return "", "no code block"
    answering = [b for b in blocks if _ANSWERS.search(b)]
    program = (answering or blocks)[-1]
    if not program.strip():
        return "", "empty code block"
    return program, None


def extract_question(text: str) -> tuple[str, str | None]:
    """The text after `Question:` up to the first code block or blank line, or "" and the reason."""
    before_code = text.split("```", 1)[0]
    match = _QUESTION.search(before_code)
    if not match:
        return "", "no 'Question:' line before the program"
    # The question may start on the "Question:" line or the next; it ends at a blank line.
    body = (match.group(1) + before_code[match.end():]).strip()
    question = " ".join(body.split("\n\n", 1)[0].split()).strip(" *_")
    if not question:
        return "", "empty question"
    return question, None


def parse_reply(text: str | None, kind: str) -> ParsedReply:
    """Parse a reply to a `solve` (program only) or `harder`/`similar` (question and program) request."""
    raw = text or ""
    if not raw.strip():
        return ParsedReply("", "", raw, "empty reply")
    question = ""
    if kind in ("harder", "similar"):
        question, reason = extract_question(raw)
        if reason:
            return ParsedReply("", "", raw, reason)
    program, reason = program_from_reply(raw)
    if reason:
        return ParsedReply("", "", raw, reason)
    return ParsedReply(question, program, raw)
