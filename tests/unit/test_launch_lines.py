"""The training stage reads its workers' records from one shared pipe: another process's output on the same line
must neither crash the stage nor lose the record (fresh-clone CI once failed the full-disk test with
'JSONDecodeError: Extra data' there)."""

from fdd_core.student.launch import _record


def test_a_record_followed_by_another_processs_output_keeps_both():
    record, rest = _record('{"rank": 1, "pid": 4242}[rank0]: OSError: No space left on device')
    assert record == {"rank": 1, "pid": 4242} and rest == "[rank0]: OSError: No space left on device"


def test_a_torn_record_is_left_to_the_log_instead_of_stopping_the_stage():
    assert _record('{"rank": 1, "pi') == (None, '{"rank": 1, "pi')
    assert _record("[1, 2]") == (None, "[1, 2]")
