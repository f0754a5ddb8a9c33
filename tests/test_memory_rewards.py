"""Memory reward: every formula and rule checked against values worked out by hand on 2-D vectors.

The fixed-map encoder sends each text to a chosen vector; the `answer` column carries the
correctness R_i directly, so each test controls exactly what goes into Ms and Mf.
"""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from memoryr.memory.episodic import MemoryFileError
from memoryr.memory.rewards import MemoryReward, MemoryRewardConfig

SQ2 = math.sqrt(2.0)


class FixedEncoder:
    """text -> fixed vector; counts calls to check that a step encodes in one batch."""

    def __init__(self, table: dict[str, tuple[float, ...]]):
        self.table = table
        self.dim = len(next(iter(table.values())))
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        return np.array([self.table[t] for t in texts], dtype=np.float32).reshape(-1, self.dim)

    def encode_queries(self, texts):
        return np.array([self.table[t] for t in texts], dtype=np.float32).reshape(-1, self.dim)


def correctness_from_answer(completions, answer, prefill):
    """Tests put R_i in the answer column."""
    return [float(a) for a in answer]


VECTORS = {
    "q": (1.0, 0.0),
    "q2": (0.0, 1.0),
    "q3": (0.6, 0.8),
    "x": (1.0, 0.0),
    "y": (0.0, 1.0),
    "z": (0.6, 0.8),
}


def make(exploration=False, encoder=None, **overrides) -> MemoryReward:
    config = MemoryRewardConfig(exploration=exploration, **overrides)
    return MemoryReward(config, encoder or FixedEncoder(VECTORS), correctness_from_answer)


def call(reward, completions, r, question="q", step=None, metrics=None, prefill=None):
    questions = [question] * len(completions) if isinstance(question, str) else question
    return reward(
        prompts=["p"] * len(completions),
        completions=completions,
        completion_ids=[[0]] * len(completions),
        question=questions,
        answer=[str(v) for v in r],
        prefill=prefill,
        trainer_state=None if step is None else SimpleNamespace(global_step=step),
        log_metric=None if metrics is None else metrics.__setitem__,
    )


def test_names_follow_the_variant():
    assert make(False).__name__ == "memoryr"
    assert make(True).__name__ == "memoryr+"


def test_empty_memory_gives_zero_and_pushes_nothing():
    reward = make(True, explore_warmup_steps=0)
    metrics = {}
    assert call(reward, ["x", "y"], [1, 0], metrics=metrics) == [0.0, 0.0]
    assert len(reward.exploit_window) == 0 and len(reward.explore_window) == 0
    assert "memory/exploit_raw_mean" not in metrics and "memory/explore_raw_mean" not in metrics
    assert metrics["memory/success_entries"] == 1 and metrics["memory/failure_entries"] == 1
    # only successes so far: Mf stays empty for q3's key search, so the explore term stays 0
    reward = make(True, explore_warmup_steps=0)
    call(reward, ["x"], [1])
    assert call(reward, ["z"], [1]) == [0.0]  # exploit: one value in the window -> 0
    assert len(reward.exploit_window) == 1 and len(reward.explore_window) == 0


def test_exploit_is_min_max_normalised_negative_distance_to_the_success_mean():
    reward = make(False)
    call(reward, ["x", "y"], [1, 0])  # Ms[q] = {x}, Mf[q] = {y}
    metrics = {}
    got = call(reward, ["x", "y", "z"], [0, 0, 0], metrics=metrics)
    # raw = -||a - (1,0)||: x 0, y -sqrt2, z -sqrt(0.8); window [0, -sqrt2, -sqrt0.8]
    assert got == pytest.approx([1.0, 0.0, 1 - math.sqrt(0.4)], abs=1e-6)
    assert list(reward.exploit_window) == pytest.approx([0.0, -SQ2, -math.sqrt(0.8)], abs=1e-7)
    assert metrics["memory/exploit_raw_mean"] == pytest.approx(-(SQ2 + math.sqrt(0.8)) / 3, abs=1e-7)
    assert metrics["memory/exploit_norm_mean"] == pytest.approx((2 - math.sqrt(0.4)) / 3, abs=1e-6)
    assert metrics["memory/explore_active"] == 0.0


def test_explore_is_one_minus_max_cosine_to_failures_and_betas_weight_the_terms():
    reward = make(True, explore_warmup_steps=0, beta_exploit=0.5, beta_explore=2.0)
    call(reward, ["x", "y"], [1, 0])
    got = call(reward, ["x", "y", "z"], [0, 0, 0])
    # explore raw = 1 - cos(a, y): x 1, y 0, z 0.2 -> normalised [1, 0, 0.2]
    exploit = [1.0, 0.0, 1 - math.sqrt(0.4)]
    explore = [1.0, 0.0, 0.2]
    assert got == pytest.approx([0.5 * s + 2.0 * e for s, e in zip(exploit, explore)], abs=1e-6)
    assert list(reward.explore_window) == pytest.approx([1.0, 0.0, 0.2], abs=1e-7)


def test_explore_takes_the_nearest_of_several_failures():
    reward = make(True, explore_warmup_steps=0)
    call(reward, ["y", "z"], [0, 0])  # Mf[q] = {y, z}, Ms empty
    metrics = {}
    call(reward, ["x"], [1], metrics=metrics)
    assert metrics["memory/explore_raw_mean"] == pytest.approx(1 - 0.6, abs=1e-7)  # max(cos x.y, cos x.z) = 0.6


def test_metrics_split_raw_and_normalised_terms_by_correctness():
    reward = make(True, explore_warmup_steps=0)
    call(reward, ["x", "y"], [1, 0])  # Ms[q] = {x}, Mf[q] = {y}
    metrics = {}
    call(reward, ["x", "y", "z"], [1, 0, 0], metrics=metrics)
    # exploit raw: x 0, y -sqrt2, z -sqrt0.8 -> normalised 1, 0, 1 - sqrt0.4; explore raw 1, 0, 0.2 -> same normalised
    assert metrics["memory/exploit_raw_correct_mean"] == pytest.approx(0.0, abs=1e-7)
    assert metrics["memory/exploit_raw_wrong_mean"] == pytest.approx(-(SQ2 + math.sqrt(0.8)) / 2, abs=1e-7)
    assert metrics["memory/exploit_norm_correct_mean"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["memory/exploit_norm_wrong_mean"] == pytest.approx((1 - math.sqrt(0.4)) / 2, abs=1e-6)
    assert metrics["memory/explore_raw_correct_mean"] == pytest.approx(1.0, abs=1e-7)
    assert metrics["memory/explore_raw_wrong_mean"] == pytest.approx(0.1, abs=1e-7)
    assert metrics["memory/explore_norm_correct_mean"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["memory/explore_norm_wrong_mean"] == pytest.approx(0.1, abs=1e-6)
    # reference mode inserts before scoring: the wrong completion finds itself in Mf (explore raw 0), the
    # correct one itself in Ms (exploit raw 0): the split makes that correctness echo visible
    reward = make(True, mode="reference", explore_warmup_failure_keys=0)
    metrics = {}
    call(reward, ["x", "y"], [1, 0], metrics=metrics)
    assert metrics["memory/exploit_raw_correct_mean"] == pytest.approx(0.0, abs=1e-7)
    assert metrics["memory/explore_raw_wrong_mean"] == pytest.approx(0.0, abs=1e-7)
    assert metrics["memory/exploit_raw_wrong_mean"] == pytest.approx(-SQ2, abs=1e-7)  # y against Ms = {x}
    assert "memory/explore_raw_correct_mean" not in metrics  # x met an empty Mf: explore 1.0, nothing scored


def _exploit_series(window, groups):
    """Normalised exploit terms of successive groups of failures at distance |t| from Ms's only entry."""
    table = dict(VECTORS)
    for group in groups:
        for t in group:
            table[f"t{t}"] = (1.0, t)
    reward = make(False, window=window, encoder=FixedEncoder(table))
    call(reward, ["x"], [1])  # Ms[q] = {(1, 0)}; later failures never change it
    return [call(reward, [f"t{t}" for t in group], [0] * len(group)) for group in groups], reward


def test_window_of_two_rolls_one_score_at_a_time():
    got, reward = _exploit_series(2, [[1], [2], [0.5], [1], [0.75]])
    # windows: [-1] -> 0 (one value); [-1,-2] -> 0; [-2,-0.5] -> 1; [-0.5,-1] -> 0; [-1,-0.75] -> 1
    assert got == [pytest.approx([v], abs=1e-6) for v in (0.0, 0.0, 1.0, 0.0, 1.0)]
    assert list(reward.exploit_window) == [-1.0, -0.75]


def test_window_of_three_with_groups_of_two_then_one():
    got, _ = _exploit_series(3, [[1, 2], [0.5, 3], [1.5]])
    # [-1,-2] -> [1, 0]; window [-2,-0.5,-3] -> [1, 0]; window [-0.5,-3,-1.5] -> (3-1.5)/2.5
    assert got == [pytest.approx(v, abs=1e-6) for v in ([1.0, 0.0], [1.0, 0.0], [0.6])]


def test_group_longer_than_the_window_is_normalised_over_window_and_group():
    got, reward = _exploit_series(2, [[1, 2, 0.5]])
    # window keeps [-2, -0.5], but lo/hi also cover -1: [(2-1)/1.5, 0, 1]
    assert got == [pytest.approx([1 / 1.5, 0.0, 1.0], abs=1e-6)]
    assert list(reward.exploit_window) == [-2.0, -0.5]


def test_thresholds_decide_which_memory_gets_a_completion():
    reward = make(False, tau_success=0.5, tau_failure=0.2)
    call(reward, ["x", "y", "z", "x"], [0.7, 0.5, 0.2, 0.0])
    assert reward.success.responses("q") == ["x"]  # 0.7 > 0.5
    assert reward.failure.responses("q") == ["z", "x"]  # 0.2 <= 0.2 and 0.0; 0.5 goes nowhere


def test_warmup_in_training_steps():
    reward = make(True, explore_warmup_steps=2)
    call(reward, ["x", "y"], [1, 0], step=0)
    metrics = {}
    inactive = call(reward, ["z"], [0], step=1, metrics=metrics)
    assert metrics["memory/explore_active"] == 0.0 and len(reward.explore_window) == 0
    assert inactive == [0.0]  # exploit only: a single value normalises to 0
    active = call(reward, ["x", "z"], [0, 0], step=2, metrics=metrics)
    assert metrics["memory/explore_active"] == 1.0
    # Mf[q] = {y, z}: explore raw x = 1 - 0.6 = 0.4, z = 0 -> [1, 0]; exploit window [-0.894, 0, -0.894]
    assert active == pytest.approx([1.0 + 1.0, 0.0 + 0.0], abs=1e-6)


def test_warmup_counts_calls_without_a_trainer_state():
    reward = make(True, explore_warmup_steps=2)
    metrics = {}
    for expected in (0.0, 0.0, 1.0):
        call(reward, ["y"], [0], metrics=metrics)
        assert metrics["memory/explore_active"] == expected


def test_exploration_off_never_adds_the_explore_term():
    reward = make(False, explore_warmup_steps=0)
    call(reward, ["y"], [0])
    assert call(reward, ["x"], [0]) == [0.0]
    assert len(reward.explore_window) == 0 and reward.failure.num_entries == 2


def test_k_above_one_averages_the_union_of_the_nearest_questions():
    table = dict(VECTORS, a=(1.0, 0.0), b=(0.0, 1.0))
    metrics = {}
    for k, expected in ((1, 0.0), (2, -math.sqrt(0.5))):
        reward = make(False, k=k, encoder=FixedEncoder(table))
        call(reward, ["a"], [1], question="q")  # Ms[q] = {(1,0)}
        call(reward, ["b"], [1], question="q2")  # Ms[q2] = {(0,1)}
        call(reward, ["x"], [0], question="q3", metrics=metrics)  # q3 is nearer q2 (0.8) than q (0.6)
        if k == 1:  # nearest only: mean (0,1), distance sqrt2
            assert metrics["memory/exploit_raw_mean"] == pytest.approx(-SQ2, abs=1e-7)
        else:  # union of both: mean (0.5,0.5)
            assert metrics["memory/exploit_raw_mean"] == pytest.approx(expected, abs=1e-7)


def test_each_group_sees_the_groups_before_it_in_the_same_step():
    reward = make(False)
    got = call(reward, ["x", "y", "y", "z"], [1, 1, 0, 0], question=["q", "q", "q2", "q"])
    # group (q: x, y) sees nothing; group (q2: y) finds Ms[q] as nearest key: mean (0.5, 0.5), raw -sqrt(0.5),
    # alone in the window -> 0; group (q: z) raw -||(0.1, 0.3)|| = -sqrt(0.1) is the window's max -> 1
    assert got == pytest.approx([0.0, 0.0, 0.0, 1.0], abs=1e-6)
    assert reward.success.num_entries == 2 and reward.failure.key_texts == ["q2", "q"]


def test_reasoning_comes_from_prefill_plus_completion_and_one_encode_call():
    encoder = FixedEncoder(dict(VECTORS, r1=(1.0, 0.0)))
    reward = make(False, encoder=encoder)
    call(reward, ["r1</reasoning>\n<answer>4</answer>", "x"], [1, 0], prefill=["<reasoning>\n", ""])
    assert reward.success.responses("q") == ["r1"]
    assert encoder.calls == 1


def test_reference_mode_inserts_before_scoring():
    # w = (2, 0) has cos(w, w) exactly 1: without eps, the reference rule would blow float noise up to 1
    encoder = FixedEncoder(dict(VECTORS, w=(2.0, 0.0)))
    reward = make(True, mode="reference", explore_warmup_failure_keys=0, encoder=encoder)
    got = call(reward, ["x", "y", "w"], [1, 0, 0])
    # x: Ms={x}: d=0, one value -> 1 - d = 1; Mf empty -> explore 1.0
    # y: Mf={y}: exploit raw -sqrt2 -> 0; explore raw 0, one value -> 0
    # w: Mf={y,w}: exploit raw -1 over [0,-sqrt2,-1] -> (sqrt2-1)/sqrt2; explore raw 0 over [0, 0] -> 0
    assert got == pytest.approx([2.0, 0.0, 1 - 1 / SQ2], abs=1e-12)
    assert list(reward.explore_window) == [0.0, 0.0]


@pytest.mark.parametrize("mode, embedded", [("paper", ["A", "Intro B"]), ("reference", ["B", "B"])])
def test_each_mode_embeds_the_reasoning_its_rule_extracts(mode, embedded):
    # two reasoning blocks, and text before an unclosed tag: the reference takes what follows the last tag
    encoder = FixedEncoder(dict(VECTORS, A=(1.0, 0.0), B=(0.0, 1.0), **{"Intro B": (0.6, 0.8)}))
    reward = make(False, mode=mode, encoder=encoder)
    call(reward, ["<reasoning>A</reasoning>\n<reasoning>B</reasoning>\n<answer>1</answer>", "Intro <reasoning>B"], [1, 1])
    assert reward.success.responses("q") == embedded


def test_reference_mode_stretches_self_match_noise_over_zero_to_one():
    # Four wrong answers to one question: each finds its own copy in Mf, so every raw exploration score
    # is 1 - cos(a, a), zero up to float rounding: 2^-53, 2^-52, -2^-52 and 0 for these directions.
    # Min-max over a window of nothing but that noise gives 0 (alone), 1, 0 and (0 + 2^-52) / 2^-51 = 0.5.
    encoder = FixedEncoder(dict(VECTORS, a=(1.0, 2.0), b=(1.0, 1.0), c=(1.0, 5.0), d=(3.0, 4.0)))
    reward = make(True, mode="reference", explore_warmup_failure_keys=0, encoder=encoder)
    got = call(reward, ["a", "b", "c", "d"], [0, 0, 0, 0])
    assert list(reward.explore_window) == [2.0**-53, 2.0**-52, -(2.0**-52), 0.0]
    assert got == pytest.approx([0.0, 1.0, 0.0, 0.5], abs=1e-12)  # no success memory: explore alone


def test_reference_mode_warmup_counts_failure_questions_not_entries():
    reward = make(True, mode="reference", explore_warmup_failure_keys=2)
    metrics = {}
    call(reward, ["y", "z", "y"], [0, 0, 0], metrics=metrics)  # three failures, one question
    assert metrics["memory/explore_active"] == 0.0 and len(reward.explore_window) == 0
    got = call(reward, ["x"], [0], question="q2", metrics=metrics)  # second failure question
    assert metrics["memory/explore_active"] == 1.0
    assert list(reward.explore_window) == [0.0]  # x itself is in Mf[q2]: raw 1 - 1 = 0
    assert got == [pytest.approx(0.0)]


def test_resume_from_saved_state_reproduces_the_uninterrupted_run(tmp_path):
    steps = [(["x", "y", "z"], [1, 0, 0]), (["z", "y"], [1, 0]), (["y", "x", "z"], [0, 1, 0]), (["x"], [0])]

    def fresh():
        return make(True, explore_warmup_steps=1, window=3, max_per_key=2)

    full = fresh()
    expected = [call(full, c, r) for c, r in steps]
    first = fresh()
    for c, r in steps[:2]:
        call(first, c, r)
    first.save(tmp_path / "mem")
    resumed = fresh()
    resumed.load(tmp_path / "mem")
    assert [call(resumed, c, r) for c, r in steps[2:]] == expected[2:]
    assert resumed.success.to_bytes() == full.success.to_bytes()
    assert resumed.failure.to_bytes() == full.failure.to_bytes()


def test_loading_refuses_mismatched_config_and_corrupt_state(tmp_path):
    reward = make(True, explore_warmup_steps=0)
    call(reward, ["x", "y"], [1, 0])
    call(reward, ["z"], [0])
    reward.save(tmp_path, step=4)
    state_path = tmp_path / "memory_state.json"
    pristine = state_path.read_text()

    make(True, explore_warmup_steps=0, beta_explore=0.5).load(tmp_path, step=4)  # weights may change on resume
    with pytest.raises(MemoryFileError, match="saved at step 4, but its checkpoint is at step 2"):
        make(True).load(tmp_path, step=2)
    for overrides, field in ((dict(max_keys=5), "max_keys"), (dict(max_per_key=5), "max_per_key"),
                             (dict(mode="reference"), "mode"), (dict(window=7), "window")):
        with pytest.raises(MemoryFileError, match=field):
            make(True, **overrides).load(tmp_path)
    with pytest.raises(MemoryFileError, match="dim"):
        make(True, encoder=FixedEncoder({"q": (1.0, 0.0, 0.0)})).load(tmp_path)

    state = json.loads(pristine)
    state["windows"]["exploit"][0] += 1e-9
    state_path.write_text(json.dumps(state))
    with pytest.raises(MemoryFileError, match="checksum"):
        make(True).load(tmp_path)
    state_path.write_text(pristine[:-20])
    with pytest.raises(MemoryFileError, match="memory_state.json"):
        make(True).load(tmp_path)
    state_path.write_text(pristine)
    (tmp_path / "memory_failure.safetensors").write_bytes(reward.success.to_bytes())
    with pytest.raises(MemoryFileError, match="memory_failure.safetensors"):
        make(True).load(tmp_path)
    with pytest.raises(MemoryFileError, match="memory_state.json"):
        make(True).load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "overrides",
    [dict(k=0), dict(window=0), dict(max_keys=0), dict(max_per_key=-1), dict(mode="faiss"),
     dict(explore_warmup_steps=-1), dict(beta_exploit=float("nan")), dict(tau_success=float("inf")),
     dict(eps=0.0), dict(exploration="yes")],
)
def test_config_rejects_bad_values(overrides):
    with pytest.raises(ValueError):
        MemoryRewardConfig(**{"exploration": True, **overrides})


def test_inspect_reports_sizes_newest_entries_and_nearest_for_a_query(tmp_path):
    from memoryr.memory.inspect import inspect_memory

    reward = make(True)
    call(reward, ["x", "y"], [1, 0])
    call(reward, ["z"], [0], question="q2")
    for step in (10, 200):
        reward.save(tmp_path / "run" / f"checkpoint-{step}" / "memory")
    text = inspect_memory(tmp_path / "run", query="q3", k=1, encoder_factory=lambda: FixedEncoder(VECTORS))
    assert "checkpoint-200" in text
    assert "successes (Ms): 1 questions, 1 responses" in text
    assert "failures (Mf): 2 questions, 2 responses" in text
    assert "cos=0.800  Q: q2" in text  # q3 is nearest q2 among failures
    assert "cos=0.600  Q: q" in text  # and only q holds a success
    with pytest.raises(MemoryFileError, match="no saved memory"):
        inspect_memory(tmp_path, query=None, k=1, encoder_factory=lambda: FixedEncoder(VECTORS))


def test_inspect_verifies_the_checksums_that_resume_verifies(tmp_path, capsys):
    from memoryr.cli import main
    from memoryr.memory.inspect import inspect_memory

    reward = make(True)
    call(reward, ["x", "y"], [1, 0])
    reward.save(tmp_path, step=3)
    state_path = tmp_path / "memory_state.json"
    pristine = state_path.read_text()
    assert "1 reward calls" in inspect_memory(tmp_path, encoder_factory=lambda: FixedEncoder(VECTORS))

    state = json.loads(pristine)
    state["config"]["window"], state["calls"] = 7, 99999  # edited by hand: resume would refuse it
    state_path.write_text(json.dumps(state))
    with pytest.raises(MemoryFileError, match="checksum"):
        make(True).load(tmp_path)
    assert main(["memory", "inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: memory state {state_path} fails its sha256 checksum (corrupt or edited)\n"

    state_path.write_text(pristine)  # and a memory file that is not the one the state was saved with
    (tmp_path / "memory_failure.safetensors").write_bytes(reward.success.to_bytes())
    with pytest.raises(MemoryFileError, match="memory_failure.safetensors is missing or does not match"):
        inspect_memory(tmp_path, encoder_factory=lambda: FixedEncoder(VECTORS))


# ---- text that UTF-8 cannot encode, and degenerate embeddings ----------------------------------

NAN, INF = float("nan"), float("inf")


class StrictEncoder(FixedEncoder):
    """A FixedEncoder that, like a real tokeniser, refuses text UTF-8 cannot encode; its table may hold NaN."""

    def encode(self, texts):
        for t in texts:
            t.encode("utf-8")
        return super().encode(texts)

    def encode_queries(self, texts):
        for t in texts:
            t.encode("utf-8")
        return super().encode_queries(texts)


def make_both(mode, table=None, **overrides) -> MemoryReward:
    """Memory-R+ with the explore term on from the start, in either mode."""
    encoder = StrictEncoder(dict(VECTORS, **(table or {})))
    return make(True, encoder=encoder, mode=mode, explore_warmup_steps=0, explore_warmup_failure_keys=0, **overrides)


def assert_all_finite(reward):
    """Neither window nor memory holds a NaN or an infinity."""
    assert np.isfinite(list(reward.exploit_window) + list(reward.explore_window)).all()
    for memory in (reward.success, reward.failure):
        assert np.isfinite(memory.retrieve(np.array([1.0, 1.0]), k=memory.max_keys)[0]).all()


@pytest.mark.parametrize("mode, first", [("paper", [0.0, 0.0, 0.0]), ("reference", [2.0, 0.0, 1.0])])
def test_lone_surrogates_become_replacement_characters_and_round_trip(tmp_path, mode, first):
    reward = make_both(mode, {"q\ufffd": (1.0, 0.0), "x\ufffd": (0.0, 1.0)})
    # paper: empty memories -> 0. reference: x\ufffd=(0,1) finds itself in Ms (d 0 -> 1) and an empty Mf (1);
    # x=(1,0) exploit -sqrt2 over [0, -sqrt2] -> 0, explore itself -> 0; x\ufffd exploit 0 -> 1, explore 0
    assert call(reward, ["x\ud800", "x", "x\udfff"], [1, 0, 0], question="q\ud800") == pytest.approx(first, abs=1e-6)
    # the same raw question finds its key again: Ms = {(0,1)}, Mf holds (1,0) and (0,1) -> exploit [0, 1], explore 0
    assert call(reward, ["x", "y"], [0, 0], question="q\ud800") == pytest.approx([0.0, 1.0], abs=1e-6)
    assert reward.success.key_texts == reward.failure.key_texts == ["q\ufffd"]
    assert reward.success.responses("q\ud800") == ["x\ufffd"]
    assert reward.failure.responses("q\ud800") == ["x", "x\ufffd", "x", "y"]
    reward.save(tmp_path / "a")
    loaded = make_both(mode)
    loaded.load(tmp_path / "a")
    assert loaded.success.to_bytes() == reward.success.to_bytes()
    assert loaded.failure.to_bytes() == reward.failure.to_bytes()
    assert loaded.failure.responses("q\ufffd") == reward.failure.responses("q\ufffd")
    loaded.save(tmp_path / "b")
    for name in ("memory_success.safetensors", "memory_failure.safetensors", "memory_state.json"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


@pytest.mark.parametrize(
    "mode, expected, exploit_window, explore_window",
    [
        # exploit raw x 0, y -sqrt2, z -sqrt0.8 over the window of those three -> 1, 0, 1 - sqrt0.4;
        # explore raw 1 - cos(a, y): x 1, y 0, z 0.2 over [1, 0, 0.2] -> 1, 0, 0.2
        ("paper", [2.0, 0.0, 0.0, 0.0, 1.2 - math.sqrt(0.4)], [0.0, -SQ2, -math.sqrt(0.8)], [1.0, 0.0, 0.2]),
        # windows carry [0, -sqrt2] and [0] from the first call; x exploit 0 -> 1, explore 0 (x is in Mf) -> 0;
        # y exploit -sqrt2 -> 0; z exploit -sqrt0.8 over [0, -sqrt2, 0, -sqrt2, -sqrt0.8] -> 1 - sqrt0.4
        ("reference", [1.0, 0.0, 0.0, 0.0, 1 - math.sqrt(0.4)], [0.0, -SQ2, 0.0, -SQ2, -math.sqrt(0.8)], [0.0] * 4),
    ],
)
def test_non_finite_completion_embedding_is_left_out_of_the_step(mode, expected, exploit_window, explore_window):
    table = {"n": (NAN, 0.0), "i": (INF, 1.0)}
    reward, without = make_both(mode, table), make_both(mode, table)
    for r in (reward, without):
        call(r, ["x", "y"], [1, 0])  # Ms[q] = {x}, Mf[q] = {y}
    metrics = {}
    got = call(reward, ["x", "n", "y", "i", "z"], [0, 1, 0, 0, 0], metrics=metrics)
    assert got == pytest.approx(expected, abs=1e-6)
    assert [got[0], got[2], got[4]] == call(without, ["x", "y", "z"], [0, 0, 0])  # bit for bit
    assert list(reward.exploit_window) == pytest.approx(exploit_window, abs=1e-7)
    assert list(reward.explore_window) == pytest.approx(explore_window, abs=1e-7)
    assert reward.success.responses("q") == ["x"] and reward.failure.responses("q") == ["y", "x", "y", "z"]
    assert all(math.isfinite(v) for v in metrics.values())
    assert_all_finite(reward)
    assert reward.success.to_bytes() == without.success.to_bytes()
    assert reward.failure.to_bytes() == without.failure.to_bytes()


@pytest.mark.parametrize("mode", ["paper", "reference"])
def test_question_embedding_without_direction_leaves_its_completions_out(mode):
    table = {"q0": (0.0, 0.0), "qn": (NAN, 1.0), "qi": (0.0, -INF)}
    reward, without = make_both(mode, table), make_both(mode, table)
    for r in (reward, without):
        call(r, ["x", "y"], [1, 0])
    # reference mode would give explore 1.0 to a question whose search found nothing: here it gets 0
    got = call(reward, ["x", "z", "y", "x"], [1, 0, 0, 0], question=["q0", "q", "qn", "qi"])
    assert got[0] == got[2] == got[3] == 0.0
    assert got[1] == call(without, ["z"], [0])[0]
    assert reward.success.key_texts == reward.failure.key_texts == ["q"]
    assert list(reward.exploit_window) == list(without.exploit_window)
    assert list(reward.explore_window) == list(without.explore_window)
    assert_all_finite(reward)


@pytest.mark.parametrize(
    "mode, expected",
    [
        # Ms = {x, o}; then o, y against centroid (0.5, 0): raw -0.5, -sqrt1.25 -> 1, 0; explore: Mf empty -> 0;
        # then x: exploit -0.5 is the window's max -> 1, explore 1 - max(cos(x, o) = 0, cos(x, y) = 0) alone -> 0
        ("paper", [[0.0, 0.0], [1.0, 0.0], [1.0]]),
        # x finds itself (2); o: exploit -0.5 over [0, -0.5] -> 0, empty Mf -> 1; o explore raw 1 - 0 alone -> 0;
        # y: explore finds itself; x: exploit -0.5 over [0, -0.5, -0.5, -sqrt1.25, -0.5] -> 1 - 0.5 / sqrt1.25
        ("reference", [[2.0, 1.0], [0.0, 0.0], [1 - 1 / math.sqrt(5)]]),
    ],
)
def test_zero_completion_embedding_is_scored_and_stored_as_any_other(mode, expected):
    reward = make_both(mode, {"o": (0.0, 0.0)})
    got = [call(reward, ["x", "o"], [1, 1]), call(reward, ["o", "y"], [0, 0]), call(reward, ["x"], [0])]
    assert got == [pytest.approx(e, abs=1e-6) for e in expected]
    assert reward.success.responses("q") == ["x", "o"] and reward.failure.responses("q") == ["o", "y", "x"]
    assert_all_finite(reward)
