"""The program sandbox as its callers see it: answer conventions, typed errors, order, threads, GSM-Hard."""

from __future__ import annotations

import json
import math
import select
import threading
import time
from dataclasses import asdict

import pytest

from fdd_core.sandbox import pool as sandbox_pool
from fdd_core.sandbox import ErrorKind, ProgramResult, Sandbox, SandboxClosed, SandboxError, run_programs


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout_s=1.0) as box:
        yield box


def run_one(sandbox: Sandbox, program: str) -> ProgramResult:
    return sandbox.run([program])[0]


CONVENTIONS = [
    ("ans = 3", 3),
    ("def solution():\n    return 4", 4),
    ("ans = 1\ndef solution():\n    return 2", 2),  # solution() wins over ans
    ("from fractions import Fraction\nans = Fraction(1, 4)", 0.25),
    ("from decimal import Decimal\nans = Decimal('2.5') * 2", 5.0),
    ("ans = 7 > 3", 1),
    ("ans = 2 ** 100", 2**100),
    ("ans = [1, 2]", "[1, 2]"),
    ("ans = 'forty'", "forty"),
    ("ans = float('nan')", "nan"),  # non-finite floats are not JSON: they come back as text
    ("for _ in range(3):\n    pass\nans = _", 2),
    ("if __name__ == '__main__':\n    ans = 5", 5),
    ("try:\n    1 / 0\nexcept ZeroDivisionError:\n    ans = -1", -1),
    ("ans = '{:.2f}'.format(3.14159)", "3.14"),
    ("ans = '{0[a]} {x}'.format({'a': 1}, x=2)", "1 2"),
    (
        "class Box:\n    def __init__(self, n):\n        self._n = n\n    def get(self):\n        return self._n\n"
        "ans = Box(9).get()",
        9,
    ),
    ("def solution():\n    import math\n    return math.gcd(12, 18)", 6),
    # harmless formatting and matching, refused before issue 14
    ("import datetime\nans = datetime.date(2024, 5, 17).strftime('%Y')", "2024"),
    ("import datetime\nd = datetime.date(2024, 5, 17)\nans = f'{d:%Y-%m}'", "2024-05"),
    ("import datetime\nans = '{:%d}'.format(datetime.datetime(2024, 5, 17, 8))", "17"),
    ("import datetime\nans = datetime.date(2024, 5, 17).timetuple().tm_yday", 138),
    ("import datetime\nans = datetime.date.today().year > 2000", 1),
    ("match [1, 2]:\n    case [a, b]:\n        ans = a + b", 3),
    ("match 5:\n    case int(x) if x > 1:\n        ans = x", 5),
    ("match {'k': 6}:\n    case {'k': v}:\n        ans = v", 6),
    ("class P:\n    def __init__(self):\n        self.x = 4\nmatch P():\n    case P(x=v):\n        ans = v", 4),
    ("class A:\n    def __init__(self):\n        self._v = 2\nclass B(A):\n    def get(self):\n        return self._v\n"
     "ans = B().get()", 2),
    ("class C:\n    _count = 3\n    @classmethod\n    def n(cls):\n        return cls._count\nans = C.n()", 3),
]


@pytest.mark.parametrize(("program", "expected"), CONVENTIONS)
def test_answer_conventions(sandbox, program, expected):
    result = run_one(sandbox, program)
    assert result.ok, result
    assert result.answer == expected
    assert type(result.answer) is type(expected)


ERRORS = [
    ("x = 1", ErrorKind.NO_ANSWER, ""),
    ("ans = None", ErrorKind.NO_ANSWER, ""),
    ("def solution():\n    pass", ErrorKind.NO_ANSWER, ""),
    ("ans = (", ErrorKind.SYNTAX, "SyntaxError"),
    ("def f(:\n  pass", ErrorKind.SYNTAX, "SyntaxError"),
    ("ans = 1 / 0", ErrorKind.RUNTIME, "ZeroDivisionError: division by zero"),
    ("ans = undefined_name", ErrorKind.RUNTIME, "NameError: name 'undefined_name' is not defined"),
    ("def solution(x):\n    return x", ErrorKind.RUNTIME, "TypeError"),
    ("ans = str(10 ** 5000)", ErrorKind.RUNTIME, "ValueError"),  # int->str digit limit stays on
    ("import os", ErrorKind.FORBIDDEN, "import of 'os' is not allowed"),
]


@pytest.mark.parametrize(("program", "kind", "message"), ERRORS)
def test_typed_errors(sandbox, program, kind, message):
    result = run_one(sandbox, program)
    assert result.error is kind
    assert result.answer is None and not result.ok
    assert message in result.message
    assert "\n" not in result.message


ALLOWED_IMPORTS = [
    ("import math\nans = math.sqrt(16)", 4.0),
    ("from fractions import Fraction\nans = Fraction(3, 6) + Fraction(1, 2)", 1.0),
    ("import decimal\ndecimal.getcontext().prec = 3\nans = decimal.Decimal(1) / 3", 0.333),
    ("import datetime\nans = (datetime.date(2024, 3, 1) - datetime.date(2024, 2, 1)).days", 29),
    ("import itertools\nans = len(list(itertools.combinations(range(5), 2)))", 10),
    ("import functools\nans = functools.reduce(lambda a, b: a * b, range(1, 6))", 120),
    ("import statistics\nans = statistics.median([3, 1, 2])", 2),
    ("import re\nans = int(re.findall(r'\\d+', 'costs 42 dollars')[0])", 42),
    ("from math import *\nans = floor(pi)", 3),
    ("import datetime\nans = datetime.datetime.strptime('2024-01-02', '%Y-%m-%d').day", 2),
]


@pytest.mark.parametrize(("program", "expected"), ALLOWED_IMPORTS)
def test_allowed_imports_work(sandbox, program, expected):
    result = run_one(sandbox, program)
    assert result.ok, result
    assert result.answer == pytest.approx(expected)


def test_print_is_captured_and_capped():
    with Sandbox(workers=1, stdout_chars=50) as box:
        small, flood = box.run(["print('hi', 3)\nans = 1", "for i in range(10000):\n    print(i)\nans = 2"])
    assert (small.answer, small.stdout) == (1, "hi 3\n")
    assert flood.answer == 2
    assert flood.stdout.startswith("0\n1\n2\n")
    assert len(flood.stdout) < 50 + 40 and "truncated" in flood.stdout


def test_programs_do_not_share_state(sandbox):
    """Each program gets fresh globals, modules and decimal context, even on the same worker."""
    leaky = [
        "secret_var = 1\nimport math\nans = 0",
        "import decimal\ndecimal.getcontext().prec = 2\nans = 0",
        "import fractions\nfractions.Fraction.limit_denominator = lambda self, m=0: 42\nans = 0",
        "import math\nmath.pi = 3\nans = 0",
    ]
    probes = [
        "ans = secret_var",
        "import decimal\nans = str(decimal.Decimal(1) / 3)",
        "from fractions import Fraction\nans = Fraction(1, 3).limit_denominator(10)",
        "import math\nans = math.pi",
    ]
    with Sandbox(workers=1, timeout_s=1.0) as box:  # one worker: every probe runs where the leak happened
        results = box.run([p for pair in zip(leaky, probes) for p in pair])
    secret, decimal_probe, fraction_probe, pi_probe = results[1::2]
    assert secret.error is ErrorKind.RUNTIME and "NameError" in secret.message
    assert decimal_probe.answer == "0.3333333333333333333333333333"
    assert fraction_probe.answer == pytest.approx(1 / 3)
    assert results[6].error is ErrorKind.RUNTIME and "read-only" in results[6].message
    assert pi_probe.answer == math.pi


def test_large_mixed_batch_keeps_input_order(sandbox):
    """Errors, timeouts and worker replacements in the middle of chunks must not shift anyone's result."""
    programs, expected = [], []
    for i in range(400):
        if i % 97 == 50:
            programs.append("while True:\n    pass")
            expected.append(ErrorKind.TIMEOUT)
        elif i % 89 == 20:
            programs.append("x = [0] * 10**9")
            expected.append(ErrorKind.MEMORY)
        elif i % 7 == 3:
            programs.append(f"ans = {i} / 0")
            expected.append(ErrorKind.RUNTIME)
        elif i % 11 == 5:
            programs.append(f"ans = ({i}")
            expected.append(ErrorKind.SYNTAX)
        else:
            programs.append(f"def solution():\n    return {i} * 2")
            expected.append(i * 2)
    results = sandbox.run(programs)
    assert len(results) == len(programs)
    got = [r.answer if r.ok else r.error for r in results]
    assert got == expected


def test_results_are_json_safe(sandbox):
    programs = ["ans = float('inf')", "ans = 1 + 2j", "ans = '\\ud800'", "ans = 10 ** 5000", "ans = {1: [2]}"]
    for result in sandbox.run(programs):
        assert result.ok, result
        json.dumps(asdict(result), allow_nan=False).encode("utf-8")


def test_run_rejects_a_bare_string_and_accepts_an_empty_batch(sandbox):
    with pytest.raises(TypeError):
        sandbox.run("ans = 1")
    with pytest.raises(TypeError):
        sandbox.run([b"ans = 1"])
    assert sandbox.run([]) == []


def test_a_worker_that_waited_long_in_the_pool_still_runs_programs():
    # A worker's start-up deadline runs from its spawn; one that waited in the pool past it, its "ready" frame
    # still unread, was taken for an overrun with no program and crashed run() with IndexError (seen in CI).
    with Sandbox(workers=1, timeout_s=1.0) as box:
        for worker in box._pool._idle:  # it starts and writes its ready frame, which nobody reads yet
            assert select.select([worker.fd], [], [], 30)[0], "the worker never said it is ready"
            worker.deadline = time.monotonic() - 1.0  # as if it had waited 30 s
        assert [r.answer for r in box.run(["ans = 6 * 7"])] == [42]


def test_closed_sandbox_refuses_work():
    box = Sandbox(workers=1)
    assert box.run(["ans = 1"])[0].answer == 1
    box.close()
    with pytest.raises(SandboxClosed):
        box.run(["ans = 1"])
    box.close()  # idempotent


def test_close_from_another_thread_stops_a_running_call():
    box = Sandbox(workers=1, timeout_s=30)
    box.run(["ans = 1"])
    outcome: list = []

    def work() -> None:
        try:
            outcome.append(box.run(["while True:\n    pass"]))
        except SandboxClosed as error:
            outcome.append(error)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.3)
    start = time.monotonic()
    box.close()
    thread.join(timeout=10)
    assert time.monotonic() - start < 5
    assert len(outcome) == 1 and isinstance(outcome[0], SandboxClosed)


def test_workers_that_cannot_start_fail_loudly(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox_pool, "WORKER_SCRIPT", tmp_path / "missing_worker.py")
    with Sandbox(workers=1) as box, pytest.raises(SandboxError, match="fail to start"):
        box.run(["ans = 1"])


def test_threads_share_run_programs():
    """Four threads at once through the shared sandbox: each gets its own answers, in order."""
    outcomes: dict[int, list] = {}

    def work(thread: int) -> None:
        programs = [f"ans = {thread} * 1000 + {i}" if i % 9 else "ans = 1 / 0" for i in range(60)]
        outcomes[thread] = [r.answer if r.ok else r.error for r in run_programs(programs)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for t in range(4):
        assert outcomes[t] == [t * 1000 + i if i % 9 else ErrorKind.RUNTIME for i in range(60)]


def test_threads_share_a_small_pool_through_timeouts():
    """More threads than workers, with workers killed and replaced under them."""
    with Sandbox(workers=2, timeout_s=0.5) as box:
        outcomes: dict[int, list] = {}

        def work(thread: int) -> None:
            programs = [f"ans = {thread + i}" for i in range(30)]
            programs[thread * 5] = "while True:\n    pass"
            outcomes[thread] = box.run(programs)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    for t in range(4):
        got = [r.answer if r.ok else r.error for r in outcomes[t]]
        assert got == [ErrorKind.TIMEOUT if i == t * 5 else t + i for i in range(30)]


def test_gsm_hard_reference_programs(data_dir):
    """All 1,319 GSM-Hard reference programs run in the sandbox and return their targets."""
    rows = [json.loads(line) for line in (data_dir / "gsm-hard" / "gsmhardv2.jsonl").open()]
    assert len(rows) == 1319
    with Sandbox() as box:
        results = box.run([row["code"] for row in rows])
    wrong = [
        (i, row["target"], result)
        for i, (row, result) in enumerate(zip(rows, results))
        if not (
            result.ok
            and isinstance(result.answer, (int, float))
            and math.isclose(result.answer, row["target"], rel_tol=1e-6, abs_tol=1e-6)
        )
    ]
    assert not wrong, wrong[:5]
