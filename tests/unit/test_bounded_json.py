"""Decoding JSON FDD does not trust: nesting depth checked before parsing, only finite numbers."""

import pytest

from fdd_core.bounded_json import JSONBoundsError, loads_bounded, nesting_depth


def test_plain_records_decode():
    assert loads_bounded(b'{"a": [1, {"b": "[[[["}], "c": 2.5}', 3) == {"a": [1, {"b": "[[[["}], "c": 2.5}
    assert nesting_depth(b'{"s": "\\"]]{{"}', 10) == 1  # brackets inside strings do not count


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 8 levels"),  # json.loads alone: RecursionError
        ('{"a": NaN}', "NaN is not a number JSON allows"),
        ("[Infinity]", "Infinity is not a number JSON allows"),
        ("[1e999]", "1e999 is beyond a float's range"),
        ("[1", "not valid JSON"),
        ("9" * 5000, "not valid JSON"),
    ],
)
def test_out_of_bounds_is_one_error(text, message):
    with pytest.raises(JSONBoundsError, match=message.replace("(", r"\(")):
        loads_bounded(text, 8)
