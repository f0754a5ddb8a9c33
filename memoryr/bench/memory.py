"""Timing of the memory reward's parts, per completion and per training step: encode, retrieve + score, update.

Public API:
    run_memory_bench(keys_list=(1000, 10000), per_key=100, group=16, steps=50, encoder=None,
                     device="cpu", step_completions=256, step_seconds=None) -> dict
    format_memory_bench(results) -> str
    `memoryr bench memory [--device auto|cpu|cuda] [--step-completions N] [--step-seconds S]` prints it.

Both memories are filled with random unit vectors (keys_list[i] questions x per_key responses each),
then `steps` groups of `group` completions of stored questions are scored and stored, timing the
parts separately and the whole `MemoryReward.score_and_update` (exploration on, past warm-up).
Encoding is timed apart with the real encoder on `device`, in one batched call as the reward makes
it, on a step's worth (`step_completions`, default 256: the paper's 16 prompts x 16) of GSM8K-like
multi-step reasonings (~90 words) and of one-step ones (~15 words): its speed depends mostly on text
length. The memory reward's cost per step is that encode call plus `step_completions` times
score_and_update at the largest memory; given `step_seconds` (a step's time, e.g. from `memoryr
bench step` or a run's `step_time`), its share of the step. Nothing is asserted about time; targets
on 2 CPU cores: < 1 ms per completion for retrieve + score + update at 10k questions, >= 300
completions/s encoded.
"""

from __future__ import annotations

import random
import time

import numpy as np

from memoryr.memory.encoder import Encoder, SentenceEncoder
from memoryr.memory.episodic import EpisodicMemory
from memoryr.memory.rewards import MemoryReward, MemoryRewardConfig, explore_scores, exploit_scores

_NAMES = ["Ava", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goran", "Hana"]
_ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "coins", "shells"]


def sample_sentences(n: int, seed: int = 0) -> list[str]:
    """Short one-step reasonings (~12 words)."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_NAMES)} has {a} {rng.choice(_ITEMS)} and gets {b} more: {a} + {b} = {a + b}."
        for a, b in ((rng.randint(2, 99), rng.randint(2, 99)) for _ in range(n))
    ]


def sample_reasonings(n: int, seed: int = 0) -> list[str]:
    """GSM8K-like multi-step reasonings (~60-90 words) with random names and numbers."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
        a, b, c, d = (rng.randint(2, 60) for _ in range(4))
        texts.append(
            f"{name} starts with {a} {item}. On Monday {name} buys {b} more, so there are {a} + {b} = {a + b} "
            f"{item}. On Tuesday {name} gives {c} {item} to a friend, which leaves {a + b} - {c} = {a + b - c}. "
            f"Each box holds {d} {item}, so filling boxes needs ({a + b - c}) / {d} = {(a + b - c) / d:.2f} "
            f"boxes. Rounding up, {name} needs {-(-(a + b - c) // d)} boxes in total. "
            f"So the answer is {-(-(a + b - c) // d)}."
        )
    return texts


class _VectorTable:
    """Encoder stand-in returning precomputed vectors, so the score timing excludes encoding."""

    def __init__(self, table: dict[str, np.ndarray], dim: int):
        self.table, self.dim = table, dim

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])

    encode_queries = encode


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """n random unit vectors (float32)."""
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _bench_encode(encoder: Encoder, texts: list[str]) -> dict:
    """Completions per second for one batched encode call (after a warm-up call)."""
    encoder.encode(texts[:8])
    start = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - start
    words = sum(len(t.split()) for t in texts) / len(texts)
    n = len(texts)
    return {"completions": n, "mean_words": words, "seconds": seconds, "completions_per_s": n / seconds}


def _bench_memory(num_keys: int, per_key: int, group: int, steps: int, dim: int, seed: int) -> dict:
    """Fill Ms and Mf, then time retrieve + raw scores, update, and the whole score_and_update per completion."""
    rng = np.random.default_rng(seed)
    config = MemoryRewardConfig(
        exploration=True, max_keys=num_keys, max_per_key=per_key, explore_warmup_steps=0, window=100
    )
    questions = [f"question {i}" for i in range(num_keys)]
    query_emb = _unit(rng, num_keys, dim)
    start = time.perf_counter()
    memories = []
    for _ in range(2):
        memory = EpisodicMemory(dim, num_keys, per_key)
        for q, e in zip(questions, query_emb):
            memory.add(q, e, _unit(rng, per_key, dim), [""] * per_key)
        memories.append(memory)
    fill_seconds = time.perf_counter() - start
    success, failure = memories

    picks = rng.integers(0, num_keys, size=steps)
    completions = [_unit(rng, group, dim) for _ in range(steps)]
    correct = [rng.random(group) < 0.3 for _ in range(steps)]
    score_s = update_s = 0.0
    for q_idx, a, ok in zip(picks, completions, correct):
        q, qe = questions[q_idx], query_emb[q_idx]
        t0 = time.perf_counter()
        for memory, formula in ((success, exploit_scores), (failure, explore_scores)):
            formula(a, memory.retrieve(qe, config.k)[0])
        t1 = time.perf_counter()
        success.add(q, qe, a[ok], [""] * int(ok.sum()))
        failure.add(q, qe, a[~ok], [""] * int((~ok).sum()))
        update_s += time.perf_counter() - t1
        score_s += t1 - t0

    texts = {f"c{s}-{i}": completions[s][i] for s in range(steps) for i in range(group)}
    texts.update({q: e for q, e in zip(questions, query_emb)})
    reward = MemoryReward(config, _VectorTable(texts, dim), correctness=lambda **kw: [])
    reward.success, reward.failure = success, failure
    start = time.perf_counter()
    for s, (q_idx, ok) in enumerate(zip(picks, correct)):
        step_texts = [f"c{s}-{i}" for i in range(group)]
        reward.score_and_update([questions[q_idx]] * group, step_texts, ok.astype(float).tolist(), step=s)
    whole_s = time.perf_counter() - start

    n = steps * group
    return {
        "keys": num_keys,
        "per_key": per_key,
        "fill_seconds": fill_seconds,
        "retrieve_score_ms": 1e3 * score_s / n,
        "update_ms": 1e3 * update_s / n,
        "score_and_update_ms": 1e3 * whole_s / n,
    }


def run_memory_bench(
    keys_list: tuple[int, ...] = (1000, 10000),
    per_key: int = 100,
    group: int = 16,
    steps: int = 50,
    encoder: Encoder | None = None,
    dim: int = 384,
    seed: int = 0,
    device: str = "cpu",
    step_completions: int = 256,
    step_seconds: float | None = None,
) -> dict:
    """Time encoding (real encoder on `device`, unless one is given) and the memory parts at each memory
    size, and the memory reward's cost for one step of `step_completions`; returns the figures."""
    encoder = encoder if encoder is not None else SentenceEncoder(device=device)
    texts = (sample_reasonings(step_completions), sample_sentences(step_completions))
    results = {
        "group": group,
        "steps": steps,
        "device": device,
        "encode": [_bench_encode(encoder, batch) for batch in texts],
        "memory": [_bench_memory(n, per_key, group, steps, dim, seed) for n in keys_list],
    }
    results["step"] = step_cost(results, step_seconds)
    return results


def step_cost(results: dict, step_seconds: float | None = None) -> dict:
    """The memory reward's seconds for one step: one encode call of its completions (multi-step reasonings)
    plus score_and_update for each at the largest memory; its share of a `step_seconds` step when given."""
    encode = results["encode"][0]
    largest = max(results["memory"], key=lambda row: row["keys"])
    memory_s = largest["score_and_update_ms"] * encode["completions"] / 1e3
    total_s = encode["seconds"] + memory_s
    share = total_s / step_seconds if step_seconds else None
    return {"completions": encode["completions"], "keys": largest["keys"], "encode_s": encode["seconds"],
            "memory_s": memory_s, "total_s": total_s, "step_seconds": step_seconds, "share": share}


def format_memory_bench(results: dict) -> str:
    """The bench figures as a plain-text table (milliseconds per completion)."""
    lines = [
        f"encode on {results['device']}: {e['completions']} texts of ~{e['mean_words']:.0f} words in one call, "
        f"{e['seconds']:.2f} s = {e['completions_per_s']:.0f} completions/s"
        for e in results["encode"]
    ]
    lines += [
        f"memory, groups of {results['group']} x {results['steps']} steps, ms per completion:",
        f"{'questions':>10} {'per q':>6} {'retrieve+score':>15} {'update':>8} {'score_and_update':>17} {'fill s':>7}",
    ]
    for row in results["memory"]:
        lines.append(
            f"{row['keys']:>10} {row['per_key']:>6} {row['retrieve_score_ms']:>15.3f} {row['update_ms']:>8.3f} "
            f"{row['score_and_update_ms']:>17.3f} {row['fill_seconds']:>7.1f}"
        )
    step = results["step"]
    line = (f"memory reward per step of {step['completions']} completions ({step['keys']} questions stored): "
            f"encode {step['encode_s']:.3f} s + memory {step['memory_s']:.3f} s = {step['total_s']:.3f} s")
    if step["share"] is not None:
        line += f" = {100 * step['share']:.1f}% of a {step['step_seconds']:g} s step"
    else:
        line += " (--step-seconds S gives its share of an S-second step)"
    return "\n".join([*lines, line])
