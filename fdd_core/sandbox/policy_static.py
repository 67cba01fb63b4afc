"""The static half of the sandbox policy: refuse a program's forbidden imports, names and attributes before it runs.

Loaded inside the sandbox worker (see worker.py); the run-time half is policy_runtime.py.
"""

from __future__ import annotations

import ast

ALLOWED_MODULE_NAMES = frozenset("math fractions decimal datetime itertools functools statistics re".split())
# Names a program may not use (unless it binds them itself): they reach code, files or objects' insides.
FORBIDDEN_NAMES = frozenset(
    "exec eval compile open input globals locals vars getattr setattr delattr breakpoint help memoryview "
    "exit quit".split()
)
# Attributes without underscores that still lead to frames, code, globals or shared class state.
FORBIDDEN_ATTRIBUTES = frozenset(
    "format_map mro register gi_frame gi_code gi_yieldfrom cr_frame cr_code cr_await cr_origin ag_frame "
    "ag_code ag_await f_back f_builtins f_code f_globals f_locals f_trace tb_frame tb_next co_code co_consts "
    "func_globals func_code im_func im_self".split()
)
# `self._count` is fine on the program's own objects; PRIVATE_HOOK checks at run time that they are its own.
PRIVATE_ATTRIBUTE_OWNERS = frozenset({"self", "cls"})
FORMAT_HOOK = "__fdd_format__"  # dunder, so a program cannot name or shadow it
PRIVATE_HOOK = "__fdd_private__"
# Attributes a match pattern may not read by keyword: `case str(format=f)` is an unvetted `.format` read.
MATCH_FORBIDDEN_ATTRIBUTES = FORBIDDEN_ATTRIBUTES | {"format"}
# Builtin types whose class pattern matches the subject itself (`case int(x)`): no attribute is read. A class
# pattern with positional sub-patterns on anything else reads the names in its __match_args__, which a class
# can choose at run time (a metaclass's __getattr__), so those are refused.
SELF_MATCHING_TYPES = frozenset("bool bytearray bytes dict float frozenset int list set str tuple".split())


# A "contained" program cannot change anything a later program could see, so a worker's session child may run
# several of them one after another (the rest get a fresh child each). Contained: only these modules (their
# public attributes are C functions and numbers), no classes, no match, no attribute set or deleted.
CONTAINED_MODULES = frozenset({"math", "itertools"})


class Forbidden(BaseException):
    """The program asked for something outside the policy (a BaseException, so `except Exception` cannot hide it)."""


def bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, (ast.MatchAs, ast.MatchStar, ast.ExceptHandler)) and node.name:
            names.add(node.name)  # `case int:` rebinds int; `except E as int` too
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return names


def check_import(node: ast.Import | ast.ImportFrom) -> None:
    if isinstance(node, ast.ImportFrom):
        if node.level or node.module not in ALLOWED_MODULE_NAMES:
            raise Forbidden(f"import of {'.' * node.level + (node.module or '')!r} is not allowed")
        for alias in node.names:
            if alias.name.startswith("_"):
                raise Forbidden(f"access to {alias.name!r} is not allowed")
    else:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULE_NAMES:
                raise Forbidden(f"import of {alias.name!r} is not allowed")


def check_attribute(node: ast.Attribute) -> bool:
    """Raise Forbidden for a refused attribute; True for `self._x`/`cls._x` (checked again at run time)."""
    name = node.attr
    owner_is_self = isinstance(node.value, ast.Name) and node.value.id in PRIVATE_ATTRIBUTE_OWNERS
    if name.startswith("__") or (name.startswith("_") and not owner_is_self) or name in FORBIDDEN_ATTRIBUTES:
        raise Forbidden(f"access to {name!r} is not allowed")
    return name.startswith("_")


def check_class_pattern(node: ast.MatchClass, own_names: set[str]) -> None:
    for name in node.kwd_attrs:  # `case C(__class__=x)` reads attributes by string
        if name.startswith("_") or name in MATCH_FORBIDDEN_ATTRIBUTES:
            raise Forbidden(f"access to {name!r} is not allowed")
    if node.patterns:
        cls = node.cls
        if not (isinstance(cls, ast.Name) and cls.id in SELF_MATCHING_TYPES and cls.id not in own_names):
            raise Forbidden(
                "positional sub-patterns are allowed only on builtin types (case int(x)); "
                "use keywords (case Point(x=a)) for other classes"
            )


def check_tree(tree: ast.AST) -> tuple[list[ast.Attribute], list[ast.Attribute]]:
    """Raise Forbidden for anything outside the policy.

    Returns the `.format` reads to route through the vetting hook, and the `self._x` accesses to route through
    the hook that checks `self` is the program's own object.
    """
    own_names = bound_names(tree)
    format_reads: list[ast.Attribute] = []
    private_accesses: list[ast.Attribute] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            check_import(node)
        elif isinstance(node, ast.Name):
            if node.id.startswith("__") and node.id != "__name__":
                raise Forbidden(f"access to {node.id!r} is not allowed")
            if node.id in FORBIDDEN_NAMES and node.id not in own_names:
                raise Forbidden(f"use of {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            if check_attribute(node):
                private_accesses.append(node)
            if node.attr == "format" and isinstance(node.ctx, ast.Load):
                format_reads.append(node)
        elif isinstance(node, ast.MatchClass):
            check_class_pattern(node, own_names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "__del__":
            raise Forbidden("defining '__del__' is not allowed")
    return format_reads, private_accesses


def route_through_hook(node: ast.Attribute, hook_name: str) -> None:
    """Rewrite `x.attr` as `hook(x).attr` (read, write or delete), after the check so the hook's name passes."""
    hook = ast.Name(id=hook_name, ctx=ast.Load())
    node.value = ast.Call(func=hook, args=[node.value], keywords=[])
    for new in (hook, node.value):
        ast.copy_location(new, node)


def is_contained(tree: ast.AST) -> bool:
    """True if the (checked) program can only touch its own objects: see CONTAINED_MODULES."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.Match)):
            return False
        if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            return False
        if isinstance(node, ast.Import) and any(a.name not in CONTAINED_MODULES for a in node.names):
            return False
        if isinstance(node, ast.ImportFrom) and node.module not in CONTAINED_MODULES:
            return False
    return True


def compile_checked(source: str):
    """Parse, check and compile a program; returns (code, whether it is contained)."""
    tree = ast.parse(source, "<program>", "exec")
    format_reads, private_accesses = check_tree(tree)
    contained = is_contained(tree)
    for node in format_reads:
        route_through_hook(node, FORMAT_HOOK)
    for node in private_accesses:
        route_through_hook(node, PRIVATE_HOOK)
    return compile(tree, "<program>", "exec"), contained
