"""JSON from sources FDD does not trust (sandbox workers, user files), decoded within bounds.

json's C decoder recurses once per nesting level, so a deeply nested value raises RecursionError (or, on a thread
with a small stack, worse); the nesting depth is therefore checked before parsing. NaN, Infinity and numbers
beyond a float's range are refused: they are not JSON, and would be written back as invalid JSON.
"""

from __future__ import annotations

import json
import math
import re

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


class JSONBoundsError(ValueError):
    """The text is not JSON within the bounds; the message says what is wrong, without the file or line."""


def nesting_depth(raw: bytes, limit: int) -> int:
    """The deepest nesting of raw JSON, counting no further than limit + 1 (brackets inside strings ignored)."""
    depth = deepest = 0
    for bracket in _STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def _refuse_constant(name: str):
    raise JSONBoundsError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONBoundsError(f"{text} is beyond a float's range")
    return value


def loads_bounded(data: bytes | str, max_depth: int):
    """json.loads, refusing nesting deeper than max_depth and non-finite numbers (JSONBoundsError)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if nesting_depth(raw, max_depth) > max_depth:
        raise JSONBoundsError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except JSONBoundsError:
        raise
    except json.JSONDecodeError as error:
        raise JSONBoundsError(f"not valid JSON ({error.msg})") from None
    except UnicodeDecodeError as error:
        raise JSONBoundsError(f"not UTF-8 text ({error.reason})") from None
    except ValueError as error:  # an integer with more digits than int() converts
        raise JSONBoundsError(f"not valid JSON ({error})") from None
