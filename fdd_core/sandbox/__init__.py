"""Untrusted program-of-thought code (the teacher's or the student's) runs only here: a pool of locked-down
worker processes. What it protects against, and what it does not, is said in scheduler.py's docstring.

Parts: scheduler.py (the API: Sandbox, run_programs), pool.py (worker processes), worker.py (a worker's
lockdown and loop), policy_static.py (what a program may name), policy_runtime.py (what it finds at run time).
"""

from fdd_core.sandbox.pool import SandboxClosed, SandboxError
from fdd_core.sandbox.scheduler import ErrorKind, ProgramResult, Sandbox, run_programs

__all__ = ["ErrorKind", "ProgramResult", "Sandbox", "SandboxClosed", "SandboxError", "run_programs"]
