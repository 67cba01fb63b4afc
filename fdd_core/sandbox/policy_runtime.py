"""What a program finds at run time in the sandbox worker: safe builtins, read-only module proxies, vetted str.format,
no metaclasses, private attributes on the program's own objects only.

Loaded only inside a worker process (see worker.py); it pre-imports the allowed modules there. A program runs in
a child forked for it alone, or, when it is contained (policy_static.is_contained), in a session child shared
with other contained programs only; fresh_namespace resets what is per program.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import time
import types

import _string  # the parser behind str.format, to vet a template's field names

if __package__:  # imported as part of fdd_core (tools that import every module)
    from .policy_static import ALLOWED_MODULE_NAMES, FORBIDDEN_ATTRIBUTES, FORMAT_HOOK, PRIVATE_HOOK, Forbidden
else:  # inside the worker, which has the package folder, not the package, on its path
    from policy_static import ALLOWED_MODULE_NAMES, FORBIDDEN_ATTRIBUTES, FORMAT_HOOK, PRIVATE_HOOK, Forbidden

ALLOWED_MODULES = {name: importlib.import_module(name) for name in sorted(ALLOWED_MODULE_NAMES)}
SAFE_BUILTIN_NAMES = (
    "abs all any ascii bin bool bytearray bytes callable chr classmethod complex dict divmod enumerate filter "
    "float format frozenset hash hex int isinstance issubclass iter len list map max min next object oct ord "
    "pow property range repr reversed round set slice sorted staticmethod str sum super tuple zip "
    "NotImplemented Ellipsis ArithmeticError AssertionError AttributeError BaseException Exception "
    "FloatingPointError GeneratorExit IndexError KeyError KeyboardInterrupt LookupError MemoryError NameError "
    "NotImplementedError OverflowError RecursionError RuntimeError StopIteration SystemExit TypeError "
    "UnboundLocalError ValueError ZeroDivisionError"
).split()


class ModuleProxy(types.SimpleNamespace):
    """A read-only stand-in for an allowed module: public, non-module attributes only."""

    def __setattr__(self, name, value):
        raise AttributeError(f"module {self.__dict__['__name__']!r} is read-only")

    __delattr__ = __setattr__

    def __getattr__(self, name):
        raise AttributeError(f"module {self.__dict__['__name__']!r} has no attribute {name!r} (or it is not allowed)")

    def __repr__(self) -> str:
        return f"<module {self.__dict__['__name__']!r} (sandboxed)>"


class Capture:
    """Collects a program's print output up to a cap; the rest is dropped and flagged."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.room = limit
        self.truncated = False

    def write(self, text: str) -> int:
        if len(text) > self.room:
            self.truncated = True
        if self.room > 0:
            self.parts.append(text[: self.room])
            self.room -= len(self.parts[-1])
        return len(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts)


class FormatHolder:
    """Carries the vetted `.format` of a string; see check_template."""

    __slots__ = ("format",)

    def __init__(self, format) -> None:
        self.format = format


_module_attributes: dict[str, dict] = {}
LIBRARY_IMPORTS: dict[str, object] = {}
_imported: dict[str, ModuleProxy] = {}
_program_classes: set[type] = set()  # classes the running program made (class statements)
_capture = Capture(0)


def public_attributes(module: types.ModuleType) -> dict:
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    values = {name: getattr(module, name) for name in names if hasattr(module, name)}
    return {
        name: value
        for name, value in values.items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and type(value).__name__ != "PyCapsule"
    }


def prepare() -> None:
    """Pre-compute module proxies and snapshot the library classes a program could monkeypatch."""
    # Lazy imports of the allowed modules, done now because a chroot hides the standard library later:
    # datetime.strptime, str.encode('utf-16') and friends, re's \N{...} escapes.
    import _strptime
    import encodings.idna, encodings.latin_1, encodings.utf_16, encodings.utf_32  # noqa: F401,E401
    import unicodedata  # noqa: F401

    # C code imports through the running program's __import__ (datetime.strptime does); a program's own
    # imports never reach this table: the AST check stops them first and `__import__` cannot be named.
    LIBRARY_IMPORTS["_strptime"] = _strptime
    # date.strftime, f"{d:%Y}", timetuple() and date.today() import `time` from C for these names only.
    LIBRARY_IMPORTS["time"] = ModuleProxy(
        __name__="time", strftime=time.strftime, struct_time=time.struct_time, time=time.time
    )
    for name, module in ALLOWED_MODULES.items():
        attributes = public_attributes(module)
        for removed in LIBRARY_REMOVALS.get(name, ()):
            attributes.pop(removed, None)
        _module_attributes[name] = attributes | LIBRARY_OVERRIDES.get(name, {})


def check_wrapper_lists(assigned, updated) -> None:
    """Only functools' default attribute lists: custom ones would be getattr by a string the program chose."""
    if tuple(assigned) != functools.WRAPPER_ASSIGNMENTS or tuple(updated) != functools.WRAPPER_UPDATES:
        raise Forbidden("custom attribute lists in functools.update_wrapper/wraps are not allowed")


def guarded_update_wrapper(
    wrapper, wrapped, assigned=functools.WRAPPER_ASSIGNMENTS, updated=functools.WRAPPER_UPDATES
):
    check_wrapper_lists(assigned, updated)
    return functools.update_wrapper(wrapper, wrapped)


def guarded_wraps(wrapped, assigned=functools.WRAPPER_ASSIGNMENTS, updated=functools.WRAPPER_UPDATES):
    check_wrapper_lists(assigned, updated)
    return functools.partial(guarded_update_wrapper, wrapped=wrapped)


# Replacements for library functions that would read attributes named by the program, or eval its strings
# (singledispatch's register() evaluates string annotations through typing.get_type_hints).
LIBRARY_OVERRIDES = {
    "functools": {"update_wrapper": guarded_update_wrapper, "wraps": guarded_wraps},
}
LIBRARY_REMOVALS = {"functools": ("singledispatch", "singledispatchmethod")}


def make_proxy(name: str) -> ModuleProxy:
    attributes = dict(_module_attributes[name])
    if name == "decimal":  # the shared template contexts are mutable: hand out copies
        for key in ("DefaultContext", "BasicContext", "ExtendedContext"):
            attributes[key] = attributes[key].copy()
    return ModuleProxy(**attributes, __name__=name)


def safe_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name in LIBRARY_IMPORTS and not level:
        return LIBRARY_IMPORTS[name]
    if level or name not in ALLOWED_MODULES:
        raise Forbidden(f"import of {name!r} is not allowed")
    if name not in _imported:
        _imported[name] = make_proxy(name)
    return _imported[name]


def check_template(template: str, depth: int = 0) -> None:
    """Refuse format fields like '{0.__class__}': str.format reads attributes at run time, out of the AST's sight."""
    for _, field, spec, _ in _string.formatter_parser(template):
        if field:
            for is_attribute, key in _string.formatter_field_name_split(field)[1]:
                if is_attribute and (key.startswith("_") or key in FORBIDDEN_ATTRIBUTES):
                    raise Forbidden(f"format field {field!r} is not allowed")
        if spec and depth < 3:
            check_template(spec, depth + 1)


def vetted_format(template: str):
    def format(*args, **kwargs):
        check_template(template)
        return str.format(template, *args, **kwargs)

    return format


def vetted_unbound_format(template, *args, **kwargs):
    if isinstance(template, str):
        check_template(template)
    return str.format(template, *args, **kwargs)


def format_hook(owner) -> FormatHolder:
    """Stands in for `owner` in `owner.format`: str formatting is vetted, anything else passes through."""
    method = owner.format
    if method is str.format:
        return FormatHolder(vetted_unbound_format)
    if isinstance(method, types.BuiltinMethodType) and isinstance(method.__self__, str) and method.__name__ == "format":
        return FormatHolder(vetted_format(method.__self__))
    return FormatHolder(method)


def captured_print(*args, sep=" ", end="\n", file=None, flush=False) -> None:
    builtins.print(*args, sep=sep, end=end, file=_capture)


def one_argument_type(obj) -> type:
    """type(x), except for a class: its metaclass (type itself, too) would build classes with any attribute names."""
    cls = type(obj)
    if issubclass(cls, type):
        raise Forbidden("type() of a class is not allowed")
    return cls


def guarded_build_class(func, name, *bases, **keywords):
    """Class statements without metaclasses: a metaclass's __instancecheck__ and __getattr__ would let the
    interpreter read attributes the program names at run time (a class pattern's __match_args__)."""
    if "metaclass" in keywords:
        raise Forbidden("metaclasses are not allowed")
    cls = builtins.__build_class__(func, name, *bases, **keywords)
    if not isinstance(cls, type) or issubclass(cls, type) or type(cls) in _program_classes:
        raise Forbidden("metaclasses are not allowed")
    _program_classes.add(cls)
    return cls


def private_access(owner):
    """Stands in for `self`/`cls` in `self._x`: only the program's own classes and their instances qualify."""
    cls = owner if isinstance(owner, type) else type(owner)
    if cls not in _program_classes:
        raise Forbidden(f"private attributes of {cls.__name__!r} objects are not allowed")
    return owner


SAFE_BUILTINS = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}
SAFE_BUILTINS.update(
    {
        "print": captured_print,
        "type": one_argument_type,
        "__import__": safe_import,
        "__build_class__": guarded_build_class,
        FORMAT_HOOK: format_hook,
        PRIVATE_HOOK: private_access,
    }
)


def fresh_namespace(stdout_chars: int) -> tuple[dict, Capture]:
    global _capture
    _capture = Capture(stdout_chars)
    _imported.clear()
    _program_classes.clear()
    return {"__builtins__": SAFE_BUILTINS, "__name__": "__main__"}, _capture
