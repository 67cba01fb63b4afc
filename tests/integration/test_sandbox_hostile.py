"""Hostile programs: each ends as its typed error within its limit, leaves nothing behind, and the pool serves on.

Uses psutil (test-only dependency) to look for leftover processes.
"""

from __future__ import annotations

import os
import time
import uuid

import psutil
import pytest

from fdd_core.sandbox import ErrorKind, Sandbox
from fdd_core.sandbox import pool as sandbox_pool

pytestmark = pytest.mark.robustness
TIMEOUT_S = 1.5
T, M, F, R = ErrorKind.TIMEOUT, ErrorKind.MEMORY, ErrorKind.FORBIDDEN, ErrorKind.RUNTIME
FOLLOW_UP = "def solution():\n    return sum(range(10))"  # a correct program run right after each hostile one

FINALIZER_LOOP = "def g():\n    try:\n        yield 1\n    finally:\n        while True:\n            pass\nx = g()\nnext(x)\nans = 1"
# Writes into any module's globals without a dunder: the self/cls exemption for private attributes reaches
# Enum's _convert_, which copies a class's attributes into the module it names (here the worker's own).
CONVERT_INTO_WORKER = (
    "import re\nclass Source:\n    LARGEST_INT_BITS = 1\n"
    "def convert(cls):\n"
    "    return cls._convert_('Tamper', '__main__', lambda name: name == 'LARGEST_INT_BITS', source=Source)\n"
    "convert(re.RegexFlag)\nans = 0"
)
HOSTILE = {
    # time
    "infinite loop": ("while True:\n    pass", {T}),
    "busy loop": ("n = 0\nwhile n >= 0:\n    n += 1", {T}),
    "busy solution": ("def solution():\n    x = 1\n    while x:\n        x = (x * 7) % 1000003 or 1", {T}),
    "sleep": ("import time\ntime.sleep(100)", {F}),
    "wait on the clock": ("import datetime\nwhile datetime.datetime.now().year > 0:\n    pass", {T}),
    "hostile __str__": ("class E(Exception):\n    def __str__(self):\n        while True:\n            pass\n"
                        "raise E()", {T}),
    "hostile __repr__ of ans": ("class A:\n    def __repr__(self):\n        while True:\n            pass\n"
                                "ans = A()", {T}),
    "finalizer loop": (FINALIZER_LOOP, {T}),
    # memory
    "huge list": ("x = [0] * 10**9", {M}),
    "growing list": ("x = []\nwhile True:\n    x.append([0] * 10**6)", {M}),
    "huge string": ("s = 'a' * 10**10", {M}),
    "huge bytes": ("b = bytes(10**10)", {M}),
    "raise MemoryError": ("raise MemoryError", {M}),
    # output
    "print flood": ("while True:\n    print('x' * 1000)", {T}),
    # huge integers
    "10**10**10": ("ans = 10**10**10", {T, M}),
    "9**9**9": ("ans = 9**9**9", {T, M}),
    "factorial": ("import math\nans = math.factorial(10**8)", {T, M}),
    # processes and threads
    "fork": ("import os\nos.fork()", {F}),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", {F}),
    "threading": ("import threading\nthreading.Thread(target=lambda: None).start()", {F}),
    "_thread": ("import _thread", {F}),
    "multiprocessing": ("import multiprocessing", {F}),
    "subprocess": ("import subprocess\nsubprocess.run(['sh', '-c', 'echo hi'])", {F}),
    # other modules
    "socket": ("import socket\nsocket.create_connection(('1.1.1.1', 80))", {F}),
    "ctypes": ("import ctypes", {F}),
    "sys": ("import sys\nans = sys.modules", {F}),
    "importlib": ("import importlib\nans = importlib.import_module('os')", {F}),
    "builtins": ("import builtins\nans = builtins.open", {F}),
    "from os import": ("from os import system", {F}),
    "dotted import": ("import os.path", {F}),
    "relative import": ("from . import programs", {F}),
    "module's own sys": ("import datetime\nans = datetime.sys.modules['os']", {R}),
    "module's own random": ("import statistics\nans = statistics.random", {R}),
    "private module attribute": ("import math as m\nans = m._x", {F}),
    # code execution
    "exec": ("exec('ans = 1')", {F}),
    "eval": ("ans = eval('1 + 1')", {F}),
    "compile": ("ans = compile('1', 'x', 'eval')", {F}),
    "aliased eval": ("e = eval\nans = e('1')", {F}),
    "__import__": ("ans = __import__('os')", {F}),
    "__builtins__": ("ans = __builtins__['open']", {F}),
    "singledispatch annotation eval": ("import functools\nans = functools.singledispatch", {R}),
    "update_wrapper getattr": ("import functools\nclass W:\n    pass\n"
                               "functools.update_wrapper(W(), print, assigned=('__globals__',), updated=())", {F}),
    # walks to the real builtins
    "subclasses walk": ("ans = ().__class__.__base__.__subclasses__()", {F}),
    "function globals": ("ans = (lambda: 0).__globals__", {F}),
    "list class": ("ans = [].__class__", {F}),
    "getattr string": ("ans = getattr(1, '__cl' + 'ass__')", {F}),
    "type mro": ("ans = type(1).__mro__", {F}),
    "type mro()": ("ans = type(1).mro()[-1]", {F}),
    "format attribute": ("ans = '{0.__class__}'.format(1)", {F}),
    "format built at run time": ("ans = ('{0.' + '_' * 2 + 'globals' + '_' * 2 + '}').format(print)", {F}),
    "format via str.format": ("f = str.format\nans = f('{0.__class__}', 1)", {F}),
    "format via map": ("ans = list(map(str.format, ['{0.__class__}'], [1]))", {F}),
    "format via super": ("class S(str):\n    pass\nans = super(S, S('{0.__class__}')).format(1)", {F}),
    "nested format spec": ("ans = '{0:{1.__class__}}'.format(1, 2)", {F}),
    "format_map": ("ans = '{a}'.format_map({'a': 1})", {F}),
    "generator frame walk": ("g = (x for x in [1])\nans = g.gi_frame.f_back.f_globals", {F}),
    "traceback frame walk": ("try:\n    1 / 0\nexcept Exception as e:\n    ans = e.__traceback__.tb_frame", {F}),
    "match class attribute": ("match 1:\n    case int(__class__=c):\n        ans = c", {F}),
    "print closure": ("ans = print.__closure__", {F}),
    "vars / globals": ("ans = globals()['__builtins__']", {F}),
    # attribute reads the interpreter does by itself, with names the program chose (issue 14)
    "metaclass": ("class M(type(int)):\n    pass", {F}),
    "metaclass of a library class": ("import fractions\nclass M(type(fractions.Fraction)):\n    pass", {F}),
    "three-argument type": ("ans = type(int)('C', (), {'__match_args__': ('__class__',)})", {F}),
    "match positional on a program class": ("class P:\n    pass\nmatch P():\n    case P(x):\n        ans = x", {F}),
    "match on a builtin name rebound by a capture": ("class Spy:\n    pass\nmatch Spy:\n    case int:\n        pass\n"
                                                     "match 1:\n    case int(x):\n        ans = x", {F}),
    "match keyword format": ("match '{0.__class__}':\n    case str(format=f):\n        ans = f(1)", {F}),
    "match keyword format on str itself": ("match str:\n    case object(format=f):\n"
                                           "        ans = f('{0.__class__}', 1)", {F}),
    "private attribute through a cls parameter": ("import re\ndef f(cls):\n    return cls._member_map_\n"
                                                  "ans = f(re.RegexFlag)", {F}),
    "private attribute through a self parameter": ("import fractions\ndef peek(self):\n    return self._numerator\n"
                                                   "ans = peek(fractions.Fraction(1, 2))", {F}),
    "Enum._convert_ into the worker": (CONVERT_INTO_WORKER, {F}),
    "__del__": ("class A:\n    def __del__(self):\n        pass\nans = A()", {F}),
    # exits and crashes
    "sys.exit": ("import sys\nsys.exit()", {F}),
    "raise SystemExit": ("raise SystemExit(3)", {R}),
    "raise KeyboardInterrupt": ("raise KeyboardInterrupt", {R}),
    "raise GeneratorExit": ("raise GeneratorExit", {R}),
    "deep recursion": ("def f(n):\n    return f(n + 1)\nans = f(0)", {R}),
    "deep solution recursion": ("def solution():\n    return solution()", {R}),
    "deep repr": ("a = []\nfor _ in range(10**5):\n    a = [a]\nans = a", {R}),
    "C stack overflow": ("x = iter([1])\nfor _ in range(2 * 10**5):\n    x = map(abs, x)\nans = next(x)", {R, M}),
}


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout_s=TIMEOUT_S, memory_mb=256) as box:
        yield box


def session_members(session_id: int) -> list[int]:
    """Processes still in a worker's session: the worker itself or anything it spawned."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == session_id:
                members.append(pid)
        except OSError:
            pass
    return members


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a zombie holds nothing but its pid
    except psutil.NoSuchProcess:
        return False


def assert_gone(pids) -> None:
    deadline = time.monotonic() + 2.0  # SIGKILL is delivered asynchronously
    for pid in pids:
        while time.monotonic() < deadline and (alive(pid) or any(map(alive, session_members(pid)))):
            time.sleep(0.02)
        assert not alive(pid), f"worker {pid} survived"
        assert not [p for p in session_members(pid) if alive(p)], f"processes left in worker {pid}'s session"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_contained(sandbox, name):
    program, kinds = HOSTILE[name]
    before = set(sandbox.worker_pids())
    start = time.monotonic()
    hostile, follow_up = sandbox.run([program, FOLLOW_UP])
    elapsed = time.monotonic() - start
    assert hostile.error in kinds, hostile
    assert hostile.answer is None
    assert elapsed < TIMEOUT_S + 3
    assert follow_up.answer == 45, follow_up  # the pool keeps serving, in the same sandbox
    for pid in sandbox.worker_pids():  # at most the worker and its session child: no program's process is left
        others = [p for p in session_members(pid) if p != pid]
        assert len(others) <= 1 and all(psutil.Process(p).ppid() == pid for p in others), others
    assert_gone(before - set(sandbox.worker_pids()))


FILE_ATTEMPTS = [
    "open({path!r}, 'w').write('x')",
    "f = open\nf({path!r}, 'w').write('x')",
    "__import__('os').open({path!r}, 65)",
    "import os\nos.system('touch ' + {path!r})",
    "import pathlib\npathlib.Path({path!r}).write_text('x')",
    "import io\nio.open({path!r}, 'w').write('x')",
    "print.__globals__['__builtins__']['open']({path!r}, 'w')",
    "import shutil\nshutil.copy('/etc/passwd', {path!r})",
]


@pytest.mark.parametrize("template", FILE_ATTEMPTS)
def test_no_files_written_outside(sandbox, tmp_path, template):
    target = tmp_path / f"escaped-{uuid.uuid4().hex}"
    result, follow_up = sandbox.run([template.format(path=str(target)), FOLLOW_UP])
    assert result.error is ErrorKind.FORBIDDEN, result
    assert not target.exists()
    assert follow_up.answer == 45


def test_reads_outside_fail(sandbox):
    programs = ["ans = open('/etc/passwd').read()", "import os\nans = os.listdir('/')", "ans = open('x').read()"]
    for result in sandbox.run(programs):
        assert result.error is ErrorKind.FORBIDDEN
        assert "root:" not in result.message + result.stdout


SECRET_ROUTES = [
    "import os\nans = os.environ['FDD_TEST_SECRET']",
    "import os\nans = os.getenv('FDD_TEST_SECRET')",
    "ans = open('/proc/self/environ').read()",
    "ans = open('/proc/{parent}/environ').read()",
    "ans = __import__('os').environ",
    "import datetime\nans = datetime.sys.modules['os'].environ['FDD_TEST_SECRET']",
    "import statistics\nans = statistics.random._os.environ['FDD_TEST_SECRET']",
    "import re\nans = re.os.environ",
    "ans = print.__globals__['builtins'].open('/proc/{parent}/environ').read()",
    "ans = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]"
    ".__init__.__globals__['environ']['FDD_TEST_SECRET']",
    "ans = '{{0.__globals__[os].environ[FDD_TEST_SECRET]}}'.format(print)",
    "ans = str(globals()) + str(locals()) + str(vars())",
    "print(dir())\nans = 0",
    "import math\nans = str(math)",
]


def test_environment_secrets_are_unreachable(monkeypatch):
    secret = f"fdd-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("FDD_TEST_SECRET", secret)
    with Sandbox(workers=1, timeout_s=TIMEOUT_S) as box:  # fresh: its workers start after the secret is set
        results = box.run([route.format(parent=os.getpid()) for route in SECRET_ROUTES])
        environments = [psutil.Process(pid).environ() for pid in box.worker_pids()]
    for route, result in zip(SECRET_ROUTES, results):
        assert secret not in repr(result), route
    assert not any(result.ok for result in results[:-1])  # the last route is harmless and must just work
    assert results[-1].answer == "<module 'math' (sandboxed)>"
    for environment in environments:
        assert "FDD_TEST_SECRET" not in environment
        assert secret not in "".join(environment.values())


def test_close_leaves_no_process_and_no_temp_dir():
    box = Sandbox(workers=2, timeout_s=0.5)
    results = box.run(["while True:\n    pass", "ans = 1", "x = [0] * 10**9", "ans = 2"])
    assert [r.error for r in results] == [T, None, M, None]
    pids = box.worker_pids()
    temp_dirs = [os.readlink(f"/proc/{pid}/cwd") for pid in pids]
    assert all(os.path.isdir(d) and "fdd-sandbox-" in d for d in temp_dirs)
    box.close()
    assert box.worker_pids() == []
    assert_gone(pids)
    assert not any(os.path.exists(d) for d in temp_dirs)


def test_os_isolation_layers_are_real(sandbox):
    """What `isolation` claims, /proc confirms; as root the chroot and the uid drop are mandatory."""
    sandbox.run(["ans = 1"])
    layers = sandbox.isolation
    assert layers, "no worker reported its isolation"
    pid = sandbox.worker_pids()[0]
    if os.geteuid() == 0:
        assert layers["chroot"] and layers["uid_drop"]
    if layers["uid_drop"]:
        assert psutil.Process(pid).uids().real != 0
    if layers["own_uid"]:  # a program's child cannot signal another worker: each has a uid of its own
        uids = {psutil.Process(p).uids().real for p in sandbox.worker_pids()}
        assert len(uids) == len(sandbox.worker_pids())
    if layers["chroot"]:
        assert os.readlink(f"/proc/{pid}/root") != "/"
    if layers["network"]:
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert psutil.Process(pid).environ() == {}


# --- Isolation per program (issue 14): what one program does cannot change another program's result. ---

# Reads any attribute of any object: a class pattern's __match_args__ comes from a metaclass whose
# __instancecheck__ says yes, so `case C(value)` makes the interpreter read the name the program chose.
READ_ANY = (
    "class Meta(type(int)):\n"
    "    def __instancecheck__(cls, obj):\n        return True\n"
    "    def __getattr__(cls, name):\n        return (cls.key,)\n"
    "def read(obj, name):\n"
    "    C = Meta('C', (), {'key': name})\n"
    "    match obj:\n        case C(value):\n            return value\n"
    "real_import = read(read(print, '__globals__')['builtins'], '__import__')\n"
    "sys = real_import('sys')\n"
    "os = real_import('os')\n"
    "main = sys.modules['__main__']\n"
)
TAMPERING = {
    "escaped program replaces the worker's answer function": (
        READ_ANY + "main.find_answer = lambda namespace: 42\nans = 0", FOLLOW_UP, 45),
    "escaped program writes a deeply nested result frame": (
        READ_ANY + "body = b'[' * 40000 + b']' * 40000\n"
        "for fd in range(3, 16):\n"
        "    try:\n        os.write(fd, main.FRAME.pack(len(body)) + body)\n    except Exception:\n        pass\n"
        "ans = 1", FOLLOW_UP, 45),
    "library class renamed through functools.update_wrapper": (
        "import functools, fractions\ndef f():\n    pass\nfunctools.update_wrapper(fractions.Fraction, f)\nans = 0",
        "from fractions import Fraction\nans = repr(Fraction(1, 2))", "Fraction(1, 2)"),
    "library function changed through functools.update_wrapper": (
        "import functools, statistics\ndef g():\n    pass\ng.note = 'changed'\n"
        "functools.update_wrapper(statistics.mean, g)\nans = 0",
        "import statistics\ntry:\n    note = statistics.mean.note\nexcept AttributeError:\n    note = ''\n"
        "ans = repr(statistics.mean).split()[1] + note", "mean"),
    "attribute set on a library function": (
        "import statistics\nstatistics.mean.note = 'changed'\nans = 0",
        "import statistics\ntry:\n    ans = statistics.mean.note\nexcept AttributeError:\n    ans = 'pristine'",
        "pristine"),
    "worker constant rewritten through Enum._convert_": (CONVERT_INTO_WORKER, "ans = 2 ** 100", 2**100),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_one_program_cannot_change_the_next_ones_result(name):
    """One worker, so the next program runs exactly where the hostile one did; the parent stays alive."""
    hostile, probe, expected = TAMPERING[name]
    with Sandbox(workers=1, timeout_s=TIMEOUT_S) as box:
        results = box.run([hostile, probe, FOLLOW_UP])
        again = box.run([probe, FOLLOW_UP])  # a later call, on the same worker or its successor
    assert results[1].answer == expected, (results[0], results[1])
    assert results[2].answer == 45
    assert [r.answer for r in again] == [expected, 45]


# A worker that breaks the protocol the way an escaped program could: the parent reads its output as untrusted.
FORGING_WORKER = '''
import json, os, struct
FRAME = struct.Struct(">I")
def send(body):
    view = memoryview(FRAME.pack(len(body)) + body)
    while view:
        view = view[os.write(1, view):]
def read_exactly(size):
    data = b""
    while len(data) < size:
        chunk = os.read(0, size - len(data))
        if not chunk:
            raise SystemExit(0)
        data += chunk
    return data
REPLIES = {
    "deep list": b"[" * 40000 + b"]" * 40000,
    "deep object": b'{"answer": ' + b'{"a": ' * 10000 + b"1" + b"}" * 10000 + b"}",
    "NaN answer": b'{"answer": NaN}',
    "Infinity answer": b'{"answer": -Infinity}',
    "not UTF-8": b"\\xff\\xfe{",
    "not an object": b"[1, 2]",
    "huge integer": b'{"answer": ' + b"9" * 5000 + b"}",
    "answer of the wrong type": b'{"answer": {"a": [1]}}',
    "unknown error kind": b'{"error": "pwned", "message": "x"}',
}
send(json.dumps({"ready": True, "pid": os.getpid(), "isolation": {}}).encode())
while True:
    batch = json.loads(read_exactly(FRAME.unpack(read_exactly(4))[0]))
    for program in batch["programs"]:
        send(REPLIES.get(program, json.dumps({"answer": 45}).encode()))
'''
FORGED_REPLIES = ["deep list", "deep object", "NaN answer", "Infinity answer", "not UTF-8", "not an object",
                  "huge integer", "answer of the wrong type", "unknown error kind"]


def test_unreadable_result_frames_are_that_programs_error(monkeypatch, tmp_path):
    """Every malformed frame is one program's runtime error; its neighbours keep their answers, run() survives."""
    script = tmp_path / "forging_worker.py"
    script.write_text(FORGING_WORKER)
    monkeypatch.setattr(sandbox_pool, "WORKER_SCRIPT", script)
    programs = [p for reply in FORGED_REPLIES for p in (reply, "ok")]
    with Sandbox(workers=1, timeout_s=TIMEOUT_S) as box:
        results = box.run(programs)
        assert [r.answer for r in box.run(["ok", "ok"])] == [45, 45]
    for reply, result, neighbour in zip(FORGED_REPLIES, results[::2], results[1::2]):
        assert result.error is R and "result" in result.message, (reply, result)
        assert neighbour.answer == 45, reply
