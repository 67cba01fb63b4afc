"""The run directory's file helpers: atomic writes and JSONL errors that name the line."""

import os

import pytest

from fdd_core.store import DataFileError, atomic_write_text, file_sha256, read_jsonl, write_jsonl


def test_jsonl_round_trip_keeps_unicode_and_order(tmp_path):
    rows = [{"q": "Zoë has 3 €"}, {"q": "b", "n": 2}]
    path = write_jsonl(tmp_path / "sub" / "rows.jsonl", rows)
    assert read_jsonl(path) == rows


@pytest.mark.robustness
def test_failed_write_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"a": 1}]
    assert os.listdir(tmp_path) == ["rows.jsonl"]  # no temp file left behind


def test_overwrite_is_a_rename(tmp_path):
    path = atomic_write_text(tmp_path / "f.txt", "one")
    inode = path.stat().st_ino
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and path.stat().st_ino != inode


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"a": 1}\n\n{"a": \n', ":3: not valid JSON"),
        ('{"a": 1}\n"text"\n', ":2: expected a JSON object, got str"),
        (b'{"a": "\xff"}\n', ": not UTF-8 text"),
    ],
)
@pytest.mark.robustness
def test_bad_jsonl_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataFileError) as e:
        read_jsonl(path)
    assert str(e.value).startswith(f"{path}{message}")


def test_missing_file_is_a_data_file_error(tmp_path):
    with pytest.raises(DataFileError, match="cannot read file"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_content_hash_changes_with_content(tmp_path):
    a = atomic_write_text(tmp_path / "a", "x")
    first = file_sha256(a)
    atomic_write_text(a, "y")
    assert file_sha256(a) != first and len(first) == 64


@pytest.mark.robustness
def test_manifest_detects_damaged_or_missing_outputs_and_changed_inputs(tmp_path):
    from fdd_core.store import verify_manifest, write_manifest

    source = atomic_write_text(tmp_path / "in.jsonl", '{"a": 1}\n')
    out = write_jsonl(tmp_path / "stage" / "out.jsonl", [{"b": i} for i in range(100)])
    model = tmp_path / "stage" / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 64)
    write_manifest(tmp_path / "stage", inputs={"in": source}, outputs={"out": out, "model": model}, rows=100)
    assert verify_manifest(tmp_path / "stage", {"in": source})["rows"] == 100

    out.write_text(out.read_text()[:-20])  # truncated by a crash or a full disk
    assert verify_manifest(tmp_path / "stage") is None
    write_jsonl(out, [{"b": i} for i in range(100)])
    assert verify_manifest(tmp_path / "stage") is not None
    (model / "weights.bin").write_bytes(b"\x01" * 64)  # a damaged checkpoint file
    assert verify_manifest(tmp_path / "stage") is None
    (model / "weights.bin").write_bytes(b"\x00" * 64)
    atomic_write_text(source, '{"a": 2}\n')  # the stage's input changed: its outputs are stale
    assert verify_manifest(tmp_path / "stage", {"in": source}) is None
    (tmp_path / "stage" / "MANIFEST.json").write_text("{not json")
    assert verify_manifest(tmp_path / "stage") is None
