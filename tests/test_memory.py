"""EpisodicMemory: FIFO and eviction, top-k retrieval, the safetensors file format and its checks."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file

from memoryr.memory.episodic import EpisodicMemory, MemoryFileError


def vec(*xs):
    return np.array(xs, dtype=np.float32)


def filled(max_keys=3, max_per_key=2) -> EpisodicMemory:
    m = EpisodicMemory(dim=2, max_keys=max_keys, max_per_key=max_per_key)
    m.add("q1", vec(1, 0), [vec(1, 1)], ["q1 a"])
    m.add("q2", vec(0, 1), [vec(2, 2), vec(3, 3)], ["q2 a", "q2 b"])
    m.add("q1", vec(1, 0), [vec(4, 4)], ["q1 b"])
    return m


def test_fifo_keeps_the_newest_L_responses_per_key():
    m = EpisodicMemory(dim=2, max_keys=5, max_per_key=2)
    m.add("q", vec(1, 0), [vec(1, 0), vec(2, 0), vec(3, 0)], ["a", "b", "c"])
    assert m.responses("q") == ["b", "c"]
    m.add("q", vec(1, 0), [vec(4, 0)], ["d"])
    values, texts, _ = m.retrieve(vec(1, 0), k=1)
    assert texts == ["c", "d"]
    np.testing.assert_array_equal(values, [[3, 0], [4, 0]])
    assert (m.num_keys, m.num_entries) == (1, 2)


def test_adding_nothing_creates_no_key():
    m = EpisodicMemory(dim=2)
    m.add("q", vec(1, 0), np.zeros((0, 2)), [])
    assert m.num_keys == 0


def test_full_memory_evicts_the_oldest_inserted_key_not_the_least_recently_used():
    m = filled(max_keys=2)
    m.add("q3", vec(1, 1), [vec(5, 5)], ["q3 a"])  # q1 is oldest although it was updated last
    assert m.key_texts == ["q2", "q3"]
    assert m.responses("q1") == []
    assert m.num_entries == 3
    m.add("q4", vec(-1, 0), [vec(6, 6)], ["q4 a"])
    assert m.key_texts == ["q3", "q4"]
    assert m.num_entries == 2


def test_retrieve_unions_the_top_k_keys_best_first():
    m = filled()
    values, texts, sims = m.retrieve(vec(0.6, 0.8), k=2)
    assert texts == ["q2 a", "q2 b", "q1 a", "q1 b"]
    np.testing.assert_allclose(sims, [0.8, 0.6], rtol=1e-6)
    np.testing.assert_array_equal(values, [[2, 2], [3, 3], [1, 1], [4, 4]])
    assert m.retrieve(vec(1, 0), k=10)[1] == ["q1 a", "q1 b", "q2 a", "q2 b"]
    assert m.top_keys(vec(0, -1), k=1) == [("q1", pytest.approx(0.0, abs=1e-7))]


def test_retrieve_from_empty_memory_is_empty():
    values, texts, sims = EpisodicMemory(dim=3).retrieve(vec(1, 0, 0), k=4)
    assert values.shape == (0, 3) and texts == [] and sims.shape == (0,)


def test_ties_go_to_the_older_key():
    m = EpisodicMemory(dim=2)
    for name in ["a", "b", "c", "d"]:
        m.add(name, vec(1, 1), [vec(0, 0)], [name])
    assert [t for t, _ in m.top_keys(vec(1, 1), k=2)] == ["a", "b"]
    m = EpisodicMemory(dim=2, max_keys=2)
    for name in ["a", "b", "c"]:  # c reuses a's row, but is younger than b
        m.add(name, vec(2, 0), [vec(0, 0)], [name])
    assert [t for t, _ in m.top_keys(vec(1, 0), k=1)] == ["b"]


def test_texts_are_capped():
    m = EpisodicMemory(dim=2, max_text_chars=4)
    m.add("q", vec(1, 0), [vec(1, 0)], ["abcdefgh"])
    assert m.responses("q") == ["abcd"]


def test_same_inserts_give_identical_bytes_and_load_round_trips(tmp_path):
    a, b = filled(max_keys=2), filled(max_keys=2)
    for m in (a, b):
        m.add("q3", vec(1, 1), [vec(5, 5)], ["é ∑ unicode"])
    assert a.to_bytes() == b.to_bytes()
    path = tmp_path / "m.safetensors"
    a.save(path)
    assert path.read_bytes() == a.to_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp file left
    loaded = EpisodicMemory.load(path, dim=2, max_keys=2, max_per_key=2)
    assert loaded.to_bytes() == a.to_bytes()
    assert loaded.key_texts == a.key_texts and loaded.responses("q3") == ["é ∑ unicode"]
    for m in (a, loaded):  # the row layout survives, so further inserts stay identical
        m.add("q4", vec(0, -1), [vec(7, 7)], ["q4 a"])
        m.add("q2", vec(0, 1), [vec(8, 8)], ["q2 c"])
    assert loaded.to_bytes() == a.to_bytes()
    tensors = load_file(str(path))  # a plain safetensors file
    assert set(tensors) == {"keys", "values", "text_bytes", "text_ends"}


def test_empty_memory_round_trips(tmp_path):
    m = EpisodicMemory(dim=4, max_keys=7, max_per_key=3)
    m.save(tmp_path / "m.safetensors")
    loaded = EpisodicMemory.load(tmp_path / "m.safetensors")
    assert (loaded.dim, loaded.max_keys, loaded.max_per_key, loaded.num_keys) == (4, 7, 3, 0)
    assert loaded.to_bytes() == m.to_bytes()


def _rewrite_metadata(data: bytes, edit) -> bytes:
    """Change a safetensors header's metadata, keeping the tensor bytes."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header["__metadata__"])
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_corrupt_or_mismatched_files_raise_a_clear_error(tmp_path):
    good = filled().to_bytes()
    path = tmp_path / "m.safetensors"

    def error_for(data: bytes, **expect) -> str:
        path.write_bytes(data)
        with pytest.raises(MemoryFileError) as info:
            EpisodicMemory.load(path, **expect)
        assert str(path) in str(info.value)
        return str(info.value)

    assert "unreadable" in error_for(good[:-5])  # truncated
    assert "unreadable" in error_for(b"not a safetensors file")
    flipped = bytearray(good)
    flipped[-3] ^= 0x01
    assert "checksum" in error_for(bytes(flipped))
    assert "format_version" in error_for(_rewrite_metadata(good, lambda m: m.update(format_version="99")))
    state_edit = _rewrite_metadata(good, lambda m: m.update(memoryr=m["memoryr"].replace('"q1"', '"qX"')))
    assert "checksum" in error_for(state_edit)
    assert "dim=2" in error_for(good, dim=3)
    assert "max_keys=3" in error_for(good, max_keys=4)
    assert "max_per_key=2" in error_for(good, max_per_key=100)
    with pytest.raises(MemoryFileError, match="missing.safetensors"):
        EpisodicMemory.load(tmp_path / "missing.safetensors")


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        EpisodicMemory(dim=0)
    with pytest.raises(ValueError, match="texts"):
        EpisodicMemory(dim=2).add("q", vec(1, 0), [vec(1, 0)], [])



def test_text_utf8_cannot_encode_is_stored_with_replacement_characters(tmp_path):
    m = EpisodicMemory(dim=2, max_text_chars=3)
    m.add("q\ud800", vec(1, 0), [vec(1, 1), vec(2, 2)], ["a\udfffbc", "\ud83d\ude00"])
    m.add("q\udc00", vec(0, 1), [vec(3, 3)], ["c"])  # any surrogate becomes U+FFFD: the same key
    m.add("q\ufffd", vec(0, 1), [vec(4, 4)], ["d"])
    assert m.key_texts == ["q\ufffd"]
    assert m.responses("q\ud800") == m.responses("q\ufffd") == ["a\ufffdb", "\ufffd\ufffd", "c", "d"]
    path = tmp_path / "m.safetensors"
    m.save(path)
    loaded = EpisodicMemory.load(path)
    assert loaded.to_bytes() == m.to_bytes() == path.read_bytes()
    assert loaded.key_texts == ["q\ufffd"] and loaded.responses("q\udbff") == m.responses("q\ufffd")
    np.testing.assert_array_equal(loaded.retrieve(vec(1, 0), k=1)[0], m.retrieve(vec(1, 0), k=1)[0])


def test_non_finite_values_and_directionless_new_keys_are_refused_without_change():
    m = filled(max_keys=2)
    before = m.to_bytes()
    with pytest.raises(ValueError, match="not finite"):
        m.add("q1", vec(1, 0), [vec(1, 1), vec(np.nan, 0)], ["a", "b"])
    with pytest.raises(ValueError, match="not finite"):
        m.add("q1", vec(1, 0), [vec(np.inf, 0)], ["a"])
    for key in (vec(0, 0), vec(np.nan, 1), vec(np.inf, 0)):  # memory is full: nothing may be evicted either
        with pytest.raises(ValueError, match="new key 'q3'"):
            m.add("q3", key, [vec(1, 1)], ["a"])
    assert m.to_bytes() == before
    m.add("q1", vec(0, 0), [vec(5, 5)], ["q1 c"])  # the key embedding is used only when the key is new
    assert m.responses("q1") == ["q1 b", "q1 c"]


def test_query_without_direction_retrieves_nothing():
    m = filled()
    for query in (vec(0, 0), vec(np.nan, 1), vec(np.inf, 0), vec(-np.inf, np.inf)):
        values, texts, sims = m.retrieve(query, k=2)
        assert values.shape == (0, 2) and texts == [] and sims.shape == (0,)
        assert m.top_keys(query, k=5) == []


def test_keys_and_queries_of_extreme_size_are_normalised_in_float64():
    m = EpisodicMemory(dim=2)
    m.add("big", vec(3e30, 4e30), [vec(1, 0)], ["big"])  # its float32 squared norm would overflow
    m.add("tiny", vec(-4e-30, 3e-30), [vec(0, 1)], ["tiny"])  # and this one's underflow to 0
    assert m.top_keys(vec(6e-30, 8e-30), k=2) == [("big", pytest.approx(1.0)), ("tiny", pytest.approx(0.0, abs=1e-7))]
    assert m.top_keys(vec(-4e30, 3e30), k=1) == [("tiny", pytest.approx(1.0))]


@pytest.fixture(scope="module")
def minilm():
    """One real all-MiniLM-L6-v2 encoder for this module's slow tests (loading takes seconds)."""
    from memoryr.memory.encoder import SentenceEncoder

    return SentenceEncoder()


@pytest.mark.slow
def test_minilm_places_similar_sentences_closer(minilm):
    assert minilm.dim == 384
    e = minilm.encode(
        [
            "Tom has 3 apples and buys 2 more, so he has 3 + 2 = 5 apples.",
            "Tom had three apples, bought two more, and now has five apples.",
            "The quarterly tax report was filed late by the accounting firm.",
        ]
    )
    assert e.shape == (3, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3
    q = minilm.encode_queries(["a question", "another", "a question"])
    np.testing.assert_array_equal(q[0], q[2])
    assert minilm.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_minilm_and_the_memory_reward_take_text_utf8_cannot_encode(minilm, tmp_path):
    from memoryr.memory.rewards import MemoryReward, MemoryRewardConfig

    e = minilm.encode(["ab\ud800cd", "ab\ufffdcd"])
    assert np.isfinite(e).all()
    np.testing.assert_array_equal(e[0], e[1])
    np.testing.assert_array_equal(minilm.encode_queries(["q\udfff?"])[0], minilm.encode_queries(["q\ufffd?"])[0])
    reward = MemoryReward(
        MemoryRewardConfig(exploration=True, explore_warmup_steps=0), minilm, lambda completions, **_: [1.0, 0.0]
    )
    for _ in range(2):
        rewards = reward(completions=["7 \ud800 apples", "\udc00"], question=["Q\ud83d?"] * 2, answer=["7"] * 2)
        assert len(rewards) == 2 and np.isfinite(rewards).all()
    assert reward.success.responses("Q\ud83d?") == ["7 \ufffd apples"] * 2
    reward.save(tmp_path)
    assert "\ufffd".encode() in (tmp_path / "memory_failure.safetensors").read_bytes()
