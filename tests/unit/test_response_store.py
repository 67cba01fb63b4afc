"""The response store: round trip, key sensitivity, counters, concurrency of threads (processes: tests/integration)."""

import threading

import pytest

from fdd_core.teacher.response_store import ResponseStore, StoredReply

BASE_KEY = dict(
    model="gpt-4o-mini",
    api_base=None,
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
    params={"temperature": 0.7, "max_tokens": 256, "seed": 11},
    sample_index=0,
    prompt="solve.v1",
)


def _key(**changes) -> str:
    return ResponseStore.key(**{**BASE_KEY, **changes})


def test_round_trip(tmp_path):
    with ResponseStore(tmp_path / "s.sqlite") as store:
        reply = StoredReply("ans = 4", 12, 3, 0.00042, "gpt-4o-mini", "solve.v1", created=1700000000.0)
        key = _key()
        assert store.get(key) is None
        store.put(key, reply)
        assert store.get(key) == reply
        assert len(store) == 1
        unknown = StoredReply("x", 1, 1, None, "openai/unknown", "solve.v1")
        store.put(_key(sample_index=1), unknown)
        assert store.get(_key(sample_index=1)).cost_usd is None  # unknown stays unknown, not 0


def test_first_reply_kept(tmp_path):
    # Another run may already have used the first reply: a later put of the same key changes nothing.
    with ResponseStore(tmp_path / "s.sqlite") as store:
        store.put(_key(), StoredReply("first"))
        store.put(_key(), StoredReply("second"))
        assert store.get(_key()).text == "first"


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"api_base": "http://127.0.0.1:8000/v1"},
        {"messages": [{"role": "user", "content": "2+3?"}]},
        {"params": {"temperature": 0.8, "max_tokens": 256, "seed": 11}},
        {"params": {"temperature": 0.7, "max_tokens": 512, "seed": 11}},
        {"params": {"temperature": 0.7, "max_tokens": 256, "seed": 12}},
        {"params": {"temperature": 0.7, "max_tokens": 256, "seed": 11, "top_p": 0.9}},
        {"sample_index": 1},
        {"prompt": "solve.v2"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_key_changes_with_every_input(change):
    assert _key(**change) != _key()


def test_key_is_canonical():
    # Same content, other dict order: same key; a trailing slash on the server does not matter.
    assert _key(params={"seed": 11, "max_tokens": 256, "temperature": 0.7}) == _key()
    assert _key(api_base="http://h:1/v1/") == _key(api_base="http://h:1/v1")
    assert len(_key()) == 64


def test_key_does_not_depend_on_the_api_key(monkeypatch):
    before = _key()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    assert _key() == before
    with pytest.raises(TypeError):
        ResponseStore.key(**BASE_KEY, api_key="sk-x")  # no way to put one in


def test_hits_misses_and_saved(tmp_path):
    with ResponseStore(tmp_path / "s.sqlite") as store:
        store.put(_key(), StoredReply("a", cost_usd=0.25))
        store.put(_key(sample_index=1), StoredReply("b", cost_usd=0.5))
        assert store.get(_key()) and store.get(_key(sample_index=1)) and store.get(_key()) is not None
        assert store.get(_key(sample_index=9)) is None
        assert store.get(_key(sample_index=8), count=False) is None  # a look that is not counted
        assert (store.hits, store.misses, store.saved_usd) == (3, 1, 1.0)
        store.put(_key(sample_index=2), StoredReply("c", cost_usd=None))
        store.get(_key(sample_index=2))
        assert store.saved_usd is None  # one unknown cost makes the saving unknown, never understated
        assert "saved=unknown" in repr(store)


def test_path_expanded_and_parents_created(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with ResponseStore("~/deep/er/teacher.sqlite") as store:
        store.put(_key(), StoredReply("a"))
    assert (tmp_path / "deep" / "er" / "teacher.sqlite").exists()


def test_closed_store_says_so(tmp_path):
    store = ResponseStore(tmp_path / "s.sqlite")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        store.get(_key())


def test_two_threads_one_store_and_two_connections(tmp_path):
    path = tmp_path / "s.sqlite"
    shared = ResponseStore(path)
    other = ResponseStore(path)  # a second connection to the same file, as a second run would have
    errors: list[BaseException] = []

    def write(store: ResponseStore, tag: str) -> None:
        try:
            for i in range(150):
                store.put(_key(sample_index=i, prompt=tag), StoredReply(f"{tag}{i}", 1, 1, 0.001))
                assert store.get(_key(sample_index=i, prompt=tag), count=False).text == f"{tag}{i}"
        except BaseException as e:  # surfaced below: an assert in a thread would vanish
            errors.append(e)

    threads = [
        threading.Thread(target=write, args=(shared, "a")),
        threading.Thread(target=write, args=(shared, "b")),
        threading.Thread(target=write, args=(other, "c")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert len(shared) == len(other) == 450
    shared.close()
    other.close()


def test_a_transaction_commits_its_calls_together_or_none_of_them(tmp_path):
    # The teacher client stores the replies that arrived together in one transaction (one fsync); a batch that fails
    # must leave nothing half-written, and a later batch must still commit.
    path = tmp_path / "s.sqlite"
    with ResponseStore(path) as store:
        with pytest.raises(RuntimeError, match="boom"):
            with store.transaction():
                store.put("a", StoredReply("ans = 1", model="m"))
                assert store.claim("b")
                raise RuntimeError("boom")
        assert store.get("a") is None
        with store.transaction():
            store.put("a", StoredReply("ans = 1", model="m"))
            store.put("b", StoredReply("ans = 2", model="m"))
        with ResponseStore(path) as other:  # another connection (another process) sees both, committed
            assert (other.get("a").text, other.get("b").text) == ("ans = 1", "ans = 2")
            assert other.claim("b")  # no claim was left behind by the failed transaction
