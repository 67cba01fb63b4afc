"""The offline teacher: answers FDD's three requests with no API key and no network, and the litellm
custom provider `fdd-offline/<name>` that serves it through litellm.

A request's kind (solve, harder, similar) is data that travels with it, the X-FDD-Request-Kind
header (prompts.KIND_HEADER, sent by the client through litellm's extra_headers), never read from
the prompt's text: editing a prompt file cannot change what the teacher answers. The problem is the
text after the last "Problem:" of the last user message (all of it without one). A request with no
kind (curl, or litellm called without the header) is answered as a solve request, as a request
without a task line always was; a kind other than the three is refused (ValueError; 400 over HTTP).

It solves the embedded synthetic domain exactly, GSM8K train problems from a "reference book" of
their worked solutions (an LLM would not need one; real users of GSM8K use a real teacher), and
damages a share `error_rate` of its replies on purpose (wrong or malformed) so curation has work.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from fdd_core import synthetic
from fdd_core.teacher.prompts import KIND_HEADER, KINDS

PROVIDER = "fdd-offline"
_PROBLEM = re.compile(r"^Problem:[ \t]*", re.M)
# GSM8K calculator annotation <<48/2=24>>; the value after the last '=' is the stated result.
_ANNOTATION = re.compile(r"<<([^<>]*)=([^<>=]*)>>")
# A prose equation "... 12 cans / 48 = $0.25 a can": a number right of '=' (maybe a percentage).
_PROSE_RHS = re.compile(r"=\s*\$?\s*(-?\d[\d,]*\.?\d*|\.\d+)(%?)")
_CLAUSE_END = re.compile(r"[:;,]\s|\.\s|=|\b(?:so|is|are|was|then|and|which|means|gives)\b", re.I)
_LITERAL = re.compile(r"(?<![\w.])(\d+\.?\d*|\.\d+)(?![\w.])")

# A few phrasings per reply kind, so replies read like a model's rather than a template's.
_PROSE = {
    "solve": ("Let me work through this one step at a time.", "I'll compute each intermediate value in turn.",
              "We can follow the quantities in the order the problem gives them.",
              "Here is a straightforward step-by-step solution.", "Breaking it into small steps makes it easy to check."),
    "harder": ("Here is a harder variation with more steps.", "Sure! This version adds more reasoning steps.",
               "Here's a more challenging version of the problem."),
    "similar": ("Here is a new problem of similar complexity.", "Sure! Here's a similar problem with new numbers.",
                "Here's a problem with the same structure and a different story."),
    "unknown": ("I'm sorry, but I can't work this problem out reliably, so I won't guess.",
                "Unfortunately I'm not able to give a verified answer for this one."),
}


def normalise_question(text: str) -> str:
    """Whitespace-collapsed text: the reference book's key, as the prompt reproduces it."""
    return " ".join(text.split())


def load_reference(path: Path) -> dict[str, str]:
    """GSM8K worked solutions by normalised question, from a train.jsonl ({"question", "answer"})."""
    book = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                book[normalise_question(row["question"])] = row["answer"]
    return book


def _arith(expr: str) -> str:
    """A GSM8K calculator expression as Python: no $ or thousands commas, % as /100, x as *."""
    e = expr.replace("$", "").replace("×", "*").replace("x", "*").replace("÷", "/").replace("−", "-")
    e = re.sub(r"(?<=\d),(?=\d{3})", "", e)
    e = re.sub(r"(\d*\.?\d+)%", r"(\1/100)", e)
    e = re.sub(r"(?<=[\d)])\s*\(", "*(", e)  # 140000(.10): implicit multiplication
    return re.sub(r"(?<![\d.])0+(?=\d)", "", e).strip()  # 05 is a syntax error in Python 3


def evaluate(program: str) -> float | int | None:
    """`ans` of one of our own arithmetic programs (no builtins), or None when it fails."""
    scope: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():  # "5(3)" warns at compile time before failing to run
            warnings.simplefilter("ignore")
            code = compile(program, "<teacher>", "exec")
        exec(code, {"__builtins__": {}}, scope)  # noqa: S102 - our own arithmetic, no builtins
        value = scope["ans"]
    except Exception:
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _value(expr: str) -> float | int | None:
    if "**" in expr:  # GSM8K writes no powers: this is a misread, and could run for ever
        return None
    return evaluate(f"ans = {expr}")


def program_from_solution(solution: str, question: str = "") -> str:
    """A straight-line program from a GSM8K worked solution's calculations, `ans` last.

    Each calculation becomes `vN = expr`; a literal equal to an earlier result (and not a number
    given in the question) becomes that variable, so the program shows where values flow.
    """
    body, _, final = solution.rpartition("####")
    given = {float(m) for m in _LITERAL.findall(question.replace(",", ""))}
    lines: list[str] = []
    values: list[float] = []
    for text_line in body.splitlines():
        found = [(_arith(e), r) for e, r in _ANNOTATION.findall(text_line)] or _prose_equations(text_line)
        for expr, stated in found:
            value = _value(expr) if re.search(r"\d", expr) else None
            if value is None:
                continue

            def link(m: re.Match) -> str:
                lit = float(m.group(1))
                if lit in given or lit == 0:
                    return m.group(1)
                hits = [i for i, v in enumerate(values) if abs(v - lit) < 1e-9]
                return f"v{hits[-1] + 1}" if hits else m.group(1)

            linked = _LITERAL.sub(link, expr)
            values.append(value)
            lines.append(f"v{len(values)} = {linked}")
    gold = final.strip().replace(",", "").replace("$", "")
    hits = [i for i, v in enumerate(values) if _close(v, gold, 1e-4)]
    # Most solutions end on the answer; some state it last in prose only: then say it outright.
    lines.append(f"ans = v{hits[-1] + 1}" if hits else f"ans = {gold or 0}")
    return "\n".join(lines)


def _prose_equations(line: str) -> list[tuple[str, str]]:
    """(expression, stated result) of the unannotated calculations in a line of prose, units and
    words dropped; only those whose expression really gives the stated result (no misreads)."""
    out = []
    for m in _PROSE_RHS.finditer(line):
        clause = _CLAUSE_END.split(line[: m.start()])[-1].replace(" x ", " * ")
        clause = re.sub(r"/\s*[A-Za-z]+", "", clause)  # per-unit: "meters/kilometer"
        if m.group(2):  # "144/600*100% = 24%": the percent sign only names the unit
            clause = clause.replace("%", "")
        pieces = re.split(r"[A-Za-z’'][\w’']*", clause)
        for i in range(len(pieces)):  # longest run of arithmetic, words between units dropped
            expr = " ".join(_arith(" ".join(pieces[i:])).split())
            if not re.search(r"\d\s*[-+*/]\s*[\d.(]", expr):
                break
            value = _value(expr)
            if value is not None and _close(value, m.group(1), 1e-2):
                out.append((expr, m.group(1)))
                break
    return out


def _close(value: float, text: str, tol: float) -> bool:
    try:
        return abs(value - float(text.replace(",", ""))) <= tol
    except ValueError:
        return False


def _fmt(value: float | int | None) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(round(value, 6)) if isinstance(value, float) else str(value)


def _rng(*parts: object) -> random.Random:
    # hashlib, not hash(): Python's str hash changes from process to process
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def message_text(content: Any) -> str:
    """A message's text: OpenAI content may be a string or a list of {"type": "text"} parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def problem_text(messages: list[dict]) -> str:
    """The problem of a request: the last user message's text after its last "Problem:" (all of it without one)."""
    last = next((message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    starts = list(_PROBLEM.finditer(last))
    return last[starts[-1].end():].strip() if starts else last.strip()


def parse_kind(value: str | None) -> str | None:
    """A request's kind as it came (any case, spaces around): 'solve', 'harder' or 'similar', or None
    when the request carries none; ValueError for any other value."""
    if value is None or not value.strip():
        return None
    kind = value.strip().lower()
    if kind not in KINDS:
        raise ValueError(f"unknown request kind {value.strip()!r}: expected one of {', '.join(KINDS)}")
    return kind


def kind_from_headers(headers: Mapping[str, Any] | None) -> str | None:
    """parse_kind of the KIND_HEADER among a request's headers (names in any case)."""
    values = [v for k, v in dict(headers or {}).items() if str(k).lower() == KIND_HEADER.lower()]
    return parse_kind(str(values[-1])) if values else None


class OfflineCompletion(NamedTuple):
    """n sampled replies to one request and its token usage (characters // 4, as a tokenizer would)."""

    texts: list[str]
    prompt_tokens: int
    completion_tokens: int


class OfflineTeacher:
    """Replies like an LLM teacher would, deterministic in (messages, kind, sample_index, seed)."""

    def __init__(self, error_rate: float = 0.1, seed: int = 0,
                 reference: Path | str | Mapping[str, str] | None = None) -> None:
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
        self.error_rate, self.seed = error_rate, seed
        if reference is None and os.environ.get("FDD_DATA_DIR"):
            default = Path(os.environ["FDD_DATA_DIR"]) / "gsm8k" / "train.jsonl"
            reference = default if default.exists() else None
        if isinstance(reference, (str, Path)):
            reference = load_reference(Path(reference))
        self.reference: Mapping[str, str] = reference or {}

    def complete(self, messages: list[dict], kind: str | None = None, n: int = 1, first_seed: int = 0
                 ) -> OfflineCompletion:
        """One chat completion: the replies of samples first_seed..first_seed+n-1 of a request of
        this kind (see reply), and its usage. The litellm provider and the HTTP server both answer with it."""
        texts = [self.reply(messages, first_seed + i, kind) for i in range(n)]
        prompt = sum(len(message_text(m.get("content"))) for m in messages) // 4
        return OfflineCompletion(texts, prompt, sum(len(t) for t in texts) // 4)

    def reply(self, messages: list[dict], sample_index: int = 0, kind: str | None = None) -> str:
        """The reply text to one sample of a request: samples of one request may differ.

        kind is the request's kind (solve, harder, similar), as the request carries it; None (a
        request without one) is answered as solve. ValueError for any other kind.
        """
        kind = parse_kind(kind)
        problem = problem_text(messages)
        key = (self.seed, kind, problem, sample_index)  # None stays None: replies as they always were
        kind = kind or "solve"
        question, program = self._answer(kind, problem, _rng("content", *key))
        prose_rng = _rng("prose", *key)
        if program is None:
            return prose_rng.choice(_PROSE["unknown"])
        damage = _rng("damage", *key)
        roll = damage.random()
        if roll < self.error_rate / 2:
            program = corrupt_program(program, damage)
        answer = evaluate(program)
        if kind == "solve":  # sampled replies differ in how they write the same reasoning
            program = reasoning_path(program, _rng("path", *key).randrange(PATH_STYLES))
        reply = _render(kind, question, program, answer, prose_rng)
        if self.error_rate / 2 <= roll < self.error_rate:
            reply = malform(reply, kind, program, damage)
        return reply

    def _answer(self, kind: str, problem: str, rng: random.Random) -> tuple[str, str | None]:
        """(new question or "", program) of a correct reply; program None for a problem it does not know."""
        if kind == "solve":
            parsed = synthetic.parse_question(problem)
            if parsed is not None:
                return "", synthetic.program_for(parsed)
            solution = self.reference.get(normalise_question(problem))
            if solution is not None:
                return "", program_from_solution(solution, problem)
            return "", None  # an unknown problem: say so, as a careful model would
        make = synthetic.make_harder if kind == "harder" else synthetic.make_similar
        for _ in range(5):  # the number search can fail for one draw; another usually succeeds
            made = make(problem, rng)
            if made is not None:
                return made
            if synthetic.parse_question(problem) is None:
                break
        return "", None


PATH_STYLES = 4


def reasoning_path(program: str, style: int) -> str:
    """One of PATH_STYLES equivalent ways to write a straight-line program, as sampled LLM replies
    differ: bit 0 names the running quantity `total`, bit 1 wraps it in a PAL-style solution()."""
    lines = program.split("\n")
    first = lines[0].split(" = ", 1)[0]
    if style & 1 and first.isidentifier() and first != "ans" and not re.search(r"\btotal\b", program):
        lines = [re.sub(rf"\b{first}\b", "total", line) for line in lines]
    if style & 2 and lines[-1].startswith("ans = "):
        lines = ["def solution():", *(f"    {line}" for line in lines[:-1]), f"    return {lines[-1][6:]}"]
    return "\n".join(lines)


def _render(kind: str, question: str, program: str, answer, rng: random.Random) -> str:
    code = f"```python\n{program}\n```"
    if kind == "solve":
        return f"{rng.choice(_PROSE['solve'])}\n{code}\nThe answer is {_fmt(answer)}."
    return f"{rng.choice(_PROSE[kind])}\n\nQuestion: {question}\n{code}"


def corrupt_program(program: str, rng: random.Random) -> str:
    """The program with one plausible slip (an operand changed, an operator swapped, a step
    dropped) that still runs but gives another answer."""
    right = evaluate(program)
    lines = program.split("\n")
    steps = [i for i, line in enumerate(lines) if "=" in line and not line.startswith("ans")]
    for _ in range(30):
        new = list(lines)
        i = rng.choice(steps or [len(lines) - 1])
        name, _, expr = new[i].partition("=")
        how = rng.choice(("operand", "operator", "drop"))
        literals = list(_LITERAL.finditer(expr))
        if how == "operand" and literals:
            m = rng.choice(literals)
            changed = _fmt(float(m.group(1)) + rng.choice((1, 2, 3, -1)))
            new[i] = f"{name}={expr[:m.start()]}{changed}{expr[m.end():]}"
        elif how == "operator" and re.search(r" [-+*] ", expr):
            op = rng.choice(re.findall(r" ([-+*]) ", expr))
            new[i] = f"{name}={expr.replace(f' {op} ', ' ' + rng.choice([o for o in '+-*' if o != op]) + ' ', 1)}"
        elif how == "drop" and i > 0 and name.strip() in expr:
            del new[i]  # only a step that updates a variable in place: the rest still runs
        else:
            continue
        wrong = evaluate("\n".join(new))
        if wrong is not None and (right is None or abs(wrong - right) > 1e-4):
            return "\n".join(new)
    return program + "\nans = ans + 1"  # the slip of last resort


def malform(reply: str, kind: str, program: str, rng: random.Random) -> str:
    """A reply that parse_reply rejects: no code block, a cut-off fence, or no Question line."""
    ways = ["no_code", "truncated"] + (["no_question"] if kind != "solve" else [])
    way = rng.choice(ways)
    if way == "no_code":
        prose, _, rest = reply.partition("```python\n")
        tail = rest.partition("```")[2]
        return prose + "\n".join("    " + line for line in program.split("\n")) + tail
    if way == "truncated":
        head, _, rest = reply.partition("```python\n")
        return head + "```python\n" + rest[: max(1, len(program) // 2)]
    return re.sub(r"^Question:\s*", "", reply, count=1, flags=re.M)


@functools.cache
def _provider_class() -> type:
    # litellm takes seconds to import: only the provider needs it, not the brain or the HTTP server
    from litellm import Usage
    from litellm.llms.custom_llm import CustomLLM, CustomLLMError
    from litellm.types.utils import Choices, Message

    class OfflineTeacherLLM(CustomLLM):
        """litellm provider `fdd-offline/<anything>`: n replies, sample indices seed..seed+n-1, of the
        kind the KIND_HEADER extra header names."""

        def __init__(self, teacher: OfflineTeacher) -> None:
            super().__init__()
            self.teacher = teacher

        def completion(self, model: str, messages: list, *_: Any, model_response: Any = None,
                       optional_params: dict | None = None, headers: dict | None = None, **__: Any) -> Any:
            # litellm hands a custom provider the call's extra_headers as `headers`: the kind is there.
            params = optional_params or {}
            if not messages:
                raise CustomLLMError(status_code=400, message="messages must not be empty")
            try:
                kind = kind_from_headers(headers)
            except ValueError as e:
                raise CustomLLMError(status_code=400, message=str(e)) from None
            first, n = int(params.get("seed") or 0), int(params.get("n") or 1)
            texts, prompt, done = self.teacher.complete(messages, kind, n, first)
            model_response.choices = [
                Choices(index=i, finish_reason="stop", message=Message(role="assistant", content=t))
                for i, t in enumerate(texts)
            ]
            model_response.usage = Usage(prompt_tokens=prompt, completion_tokens=done, total_tokens=prompt + done)
            model_response.model = f"{PROVIDER}/{model}"
            return model_response

        async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
            return self.completion(*args, **kwargs)

    return OfflineTeacherLLM


def __getattr__(name: str) -> Any:
    if name == "OfflineTeacherLLM":
        return _provider_class()
    raise AttributeError(name)


def register_offline_provider(error_rate: float = 0.1, seed: int = 0,
                              reference: Path | str | Mapping[str, str] | None = None) -> Any:
    """Serve `fdd-offline/<name>` through litellm; calling it again replaces only our own entry."""
    import litellm

    handler = _provider_class()(OfflineTeacher(error_rate, seed, reference))
    others = [e for e in litellm.custom_provider_map if e.get("provider") != PROVIDER]
    litellm.custom_provider_map = [*others, {"provider": PROVIDER, "custom_handler": handler}]
    return handler
