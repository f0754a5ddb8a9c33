"""Memory-R / Memory-R+ intrinsic reward: a TRL reward callable backed by two episodic memories.

Public API:
    MemoryRewardConfig(exploration, k=1, max_keys=10000, max_per_key=100, max_text_chars=400, window=100,
                       beta_exploit=1.0, beta_explore=1.0, tau_success=0.5, tau_failure=0.5,
                       explore_warmup_steps=50, explore_warmup_failure_keys=500, mode="paper", eps=1e-8)
    MemoryReward(config, encoder, correctness)     __name__ is "memoryr" or "memoryr+"
        __call__(completions=, question=, answer=, prefill=, trainer_state=, log_metric=, ...) -> rewards
        .score_and_update(questions, full_texts, correctness, step) -> StepScores
        .save(directory), .load(directory), .success / .failure (EpisodicMemory)
    read_state(directory) -> dict: a saved memory_state.json, its checksums and its memory files' verified.
    exploit_scores(a, stored), explore_scores(a, stored): the raw formulas, one score per row of a.

Notation: Ms / Mf the success / failure memories, e(a) the embedding of a completion's reasoning
(extracted from prefill + completion by the mode's rule, below), B(M, q) the union of the stored
responses of the k keys most cosine-similar to question q, R_i the correctness of completion i.

Input rules (both modes):
  * Text: questions and full texts first go through `memoryr.memory.episodic.valid_text`, which replaces
    each surrogate code point (a model can decode a lone one; UTF-8 cannot encode it) with U+FFFD.
    Grouping, key lookup, encoding and storage all see that text, so a raw question always maps to
    the same key and the encoder and the saved files never meet an unencodable string.
  * Degenerate embeddings: a completion is left out of the step when its embedding is not finite
    (NaN or infinite) or its question's embedding is zero or not finite (no direction to search
    keys by): both its terms are 0, its raw scores are pushed into no window, and it is inserted
    into neither memory. The other completions are scored exactly as if it were absent, so a NaN
    never reaches a window, a centroid or a key. A zero completion embedding is finite and used as
    any other (its cosine to everything is 0).

Paper mode (default; arXiv 2504.02273, the exact rules chosen here):
  * Reasoning: `memoryr.tasks.grading.extract_reasoning`, the inside of the first closed
    <reasoning>...</reasoning> block, else what part of one was written (a missing tag is ignored).
  * The step's completions (all processes' together) are cut into groups: maximal runs of
    consecutive completions with the same question. Groups are handled in order; each is scored
    against the memories as they were before it, then inserted (so an earlier group of the same
    step is already visible to a later one).
  * Exploit raw score: -||e(a) - mean(B(Ms, q))||_2. Explore raw score: 1 - max_j cos(e(a), e(a_j))
    over a_j in B(Mf, q).
  * Normalisation: the group's raw scores are pushed into that kind's window (the last `window`
    raw scores), then each is mapped to (raw - lo) / (hi - lo + eps), lo/hi the min/max over the
    window and the group (the same as the window when the group is no longer than it). Normalised
    scores therefore lie in [0, 1]; a window holding one distinct value gives 0.
  * Empty memory: when B is empty the term is 0 for every completion of the group and nothing is
    pushed into the window.
  * Warm-up: the explore term is active once the training step (trainer_state.global_step, or the
    number of earlier calls when no trainer state is passed) is >= explore_warmup_steps. Inactive:
    the term is 0, nothing is pushed; Mf is still filled.
  * Update: Ms[q] += {a_i : R_i > tau_success}, Mf[q] += {a_i : R_i <= tau_failure}, in completion
    order. Both memories are filled for Memory-R too (its rewards ignore Mf; inspection uses it).
  * R_mem = beta_exploit * exploit_hat + beta_explore * explore_hat (explore only for Memory-R+).

Reference mode reproduces the public code (github.com/thaihungle/Memory-R: run_gsm8k.py's
novelty_reward_func_exploit / _explore with rewards/ir_knn_st.py's FastKNNMemory), read for this:
  * Reasoning: `memoryr.tasks.grading.extract_last_reasoning`, the reference's `extract_xml_reasoning`:
    the text after the *last* <reasoning>, cut at the next </reasoning>. So "<reasoning>A</reasoning>
    <reasoning>B</reasoning>" embeds "B" (paper mode: "A"), and "Intro <reasoning>B" embeds "B"
    (paper mode: "Intro B").
  * Completions are handled one at a time: a completion is inserted (if it qualifies) before it is
    scored, so a correct completion finds its own embedding in B(Ms, q) and a wrong one in B(Mf, q).
  * Each raw score is pushed, then normalised against its window including itself as
    (raw - lo) / (hi - lo), no eps. When hi == lo the reference returns the raw distance d as the
    "novelty", so exploit_hat = 1 - d there; explore_hat = 0.
  * Self-matches and float noise: a wrong completion's explore raw score is 1 - cos(e(a), e(a)) for
    the copy of itself it just put in Mf, i.e. 0 up to rounding (+-1e-16 here in float64, ~1e-7 in
    the reference's float32). A window holding only such self-matches therefore holds only float
    noise, and the min-max rule stretches that noise over [0, 1] (noise values 2^-53, 2^-52, -2^-52,
    0 normalise to 0, 1, 0, 0.5), exactly as the reference does. This is kept on purpose: it is what
    produced the paper's numbers. (A correct completion alone in Ms[q] has exploit distance exactly
    0, the mean of one vector being that vector.) Paper mode scores a group before inserting it and
    adds eps, so it has neither effect.
  * Empty B: exploit_hat = 0 (novelty 1.0, reward 1 - 1), explore_hat = 1.0; nothing pushed.
  * Warm-up counts distinct failure *questions*, not entries: the explore term is 0 while Mf holds
    fewer than explore_warmup_failure_keys (500) keys (`len(self.keys) < explore_phase`), checked
    per completion after its insert.
  * The reference's exploit reward is 1 - normalised distance, which equals the normalised
    negative distance used here; its annealing factor is 1 (anneal_rate=1) and so omitted; its faiss
    L2 key search ranks unit-norm MiniLM keys exactly as cosine does.
  Not reproduced, being artefacts rather than choices: the reference keys every completion of a
  reward call under the first prompt's question (prompts[0]), which mislabels half of them at two
  prompts per device; its key eviction leaves its value dict misindexed; under several GPUs each
  process keeps its own diverging memory. Its correctness (exact string equality of the extracted
  answer) is `grading: reference`, and its Memory-R exploit memory size (L = 1000) is
  `memory_max_per_key: 1000`: settings, used by the `*-paper` recipes, not part of this mode.

Multi-process: under accelerate each process receives its slice of the step. Questions, full texts
and correctness (computed locally) are gathered with `gather_object`; every process encodes the
whole step in one call, scores and updates the memories for the whole step in the same order, and
returns its own slice. Every process thus holds an identical memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from accelerate import PartialState
from accelerate.utils import gather_object

from memoryr.memory.encoder import Encoder
from memoryr.memory.episodic import EpisodicMemory, MemoryFileError, unit_vector, valid_text
from memoryr.tasks.grading import extract_last_reasoning, extract_reasoning
from memoryr.tasks.rewards import full_texts

MODES = ("paper", "reference")
REASONING_RULES = {"paper": extract_reasoning, "reference": extract_last_reasoning}  # what each mode embeds
STATE_FORMAT_VERSION = 1
SUCCESS_FILE = "memory_success.safetensors"
FAILURE_FILE = "memory_failure.safetensors"
STATE_FILE = "memory_state.json"
# Config fields that shape the saved state; the others (betas, thresholds, k, warm-ups) may change on resume.
_STRUCTURAL_FIELDS = ("mode", "max_keys", "max_per_key", "max_text_chars", "window")


@dataclass
class MemoryRewardConfig:
    """Settings of the memory reward (defaults: the paper's GSM8K setup)."""

    exploration: bool  # False: Memory-R (exploit only); True: Memory-R+ (exploit + explore)
    k: int = 1  # top-k query keys whose responses form B(M, q)
    max_keys: int = 10000  # N: query keys per memory, oldest evicted
    max_per_key: int = 100  # L: responses per key, FIFO
    max_text_chars: int = 400  # stored response text is cut to this (for inspection only)
    window: int = 100  # w: raw scores kept for min-max normalisation, per kind
    beta_exploit: float = 1.0
    beta_explore: float = 1.0
    tau_success: float = 0.5  # R_i > tau_success goes to Ms
    tau_failure: float = 0.5  # R_i <= tau_failure goes to Mf
    explore_warmup_steps: int = 50  # paper mode: training steps before the explore term starts
    explore_warmup_failure_keys: int = 500  # reference mode: failure-memory keys before it starts
    mode: str = "paper"  # "paper" or "reference"
    eps: float = 1e-8

    def __post_init__(self):
        if not isinstance(self.exploration, bool):
            raise ValueError(f"exploration must be True or False, got {self.exploration!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("k", "max_keys", "max_per_key", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("max_text_chars", "explore_warmup_steps", "explore_warmup_failure_keys"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("beta_exploit", "beta_explore", "tau_success", "tau_failure"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be a small positive number, got {self.eps!r}")


@dataclass
class StepScores:
    """Per completion of a step: normalised terms (0 where not scored), raw and normalised values (NaN where not scored)."""

    exploit: np.ndarray
    explore: np.ndarray
    exploit_raw: np.ndarray
    exploit_norm: np.ndarray
    explore_raw: np.ndarray
    explore_norm: np.ndarray
    explore_active: bool = False

    @classmethod
    def empty(cls, n: int) -> StepScores:
        """Nothing scored yet for n completions."""
        return cls(*(np.zeros(n) for _ in range(2)), *(np.full(n, np.nan) for _ in range(4)))


def _groups(questions: list[str]) -> list[tuple[str, int, int]]:
    """Maximal runs of consecutive equal questions, as (question, start, end)."""
    runs, start = [], 0
    for i in range(1, len(questions) + 1):
        if i == len(questions) or questions[i] != questions[start]:
            runs.append((questions[start], start, i))
            start = i
    return runs


def exploit_scores(a: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """R_exploit = -||e(a) - mean(B(Ms, q))||_2 for each row of a, in float64."""
    centroid = np.asarray(stored, dtype=np.float64).mean(axis=0)
    return -np.linalg.norm(np.asarray(a, dtype=np.float64) - centroid, axis=1)


def explore_scores(a: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """R_explore = 1 - max_j cos(e(a), e(a_j)) over a_j in B(Mf, q) for each row of a, in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(stored, dtype=np.float64)
    a_unit = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b_unit = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return 1.0 - np.einsum("id,jd->ij", a_unit, b_unit).max(axis=1)  # single-threaded, see EpisodicMemory


def _normalise_reference(window: deque[float], raw: float, degenerate: float) -> float:
    """The reference's per-score rule: push, then (raw - lo) / (hi - lo), or `degenerate` when hi == lo."""
    window.append(raw)
    lo, hi = min(window), max(window)
    return degenerate if hi == lo else (raw - lo) / (hi - lo)


def _canonical_json(obj: dict) -> bytes:
    """Stable JSON bytes for checksums."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


class MemoryReward:
    """TRL reward function: R_mem = beta_s * exploit_hat + beta_e * explore_hat, memories updated each step."""

    def __init__(self, config: MemoryRewardConfig, encoder: Encoder, correctness: Callable[..., list[float]]):
        self.config = config
        self.encoder = encoder
        self.correctness = correctness
        self.__name__ = "memoryr+" if config.exploration else "memoryr"
        self.success = self._empty_memory()
        self.failure = self._empty_memory()
        self.exploit_window: deque[float] = deque(maxlen=config.window)
        self.explore_window: deque[float] = deque(maxlen=config.window)
        self.calls = 0  # completed __call__s; the warm-up clock when TRL passes no trainer_state

    def _empty_memory(self) -> EpisodicMemory:
        """A memory sized by the config and the encoder."""
        c = self.config
        return EpisodicMemory(self.encoder.dim, c.max_keys, c.max_per_key, c.max_text_chars)

    def __call__(
        self,
        completions: list,
        question: list[str],
        answer: list[str],
        prefill: list[str] | None = None,
        trainer_state=None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **kwargs,
    ) -> list[float]:
        """Memory rewards for this process's completions, after scoring and storing the whole step."""
        started = time.perf_counter()
        n_local = len(completions)
        prefill = list(prefill) if prefill is not None else [""] * n_local
        texts = full_texts(completions, prefill)
        correct = [float(r) for r in self.correctness(completions=completions, answer=answer, prefill=prefill)]
        questions = list(question)
        state = PartialState()
        offset = 0
        if state.num_processes > 1:
            questions, texts, correct = gather_object(questions), gather_object(texts), gather_object(correct)
            offset = state.process_index * n_local

        step = trainer_state.global_step if trainer_state is not None else self.calls
        scores = self.score_and_update(questions, texts, correct, step)
        self.calls += 1
        c = self.config
        rewards = c.beta_exploit * scores.exploit + (c.beta_explore * scores.explore if c.exploration else 0.0)
        mine = slice(offset, offset + n_local)

        if log_extra is not None:
            log_extra("memory_exploit", scores.exploit[mine].tolist())
            if c.exploration:
                log_extra("memory_explore", scores.explore[mine].tolist())
        if log_metric is not None:
            self._log_metrics(log_metric, scores, correct, time.perf_counter() - started)
        return rewards[mine].tolist()

    def score_and_update(self, questions: list[str], texts: list[str], correct: list[float], step: int) -> StepScores:
        """Score a whole step's completions (full texts) and store them, in the configured mode's order."""
        questions = [valid_text(q) for q in questions]
        reasoning = [REASONING_RULES[self.config.mode](valid_text(t)) for t in texts]
        embeddings = np.asarray(self.encoder.encode(reasoning), dtype=np.float32)  # as stored: finite stays finite
        unique = list(dict.fromkeys(questions))
        query_emb = dict(zip(unique, self.encoder.encode_queries(unique)))
        searchable = {q: unit_vector(e) is not None for q, e in query_emb.items()}
        usable = np.isfinite(embeddings).all(axis=1) & np.array([searchable[q] for q in questions], dtype=bool)
        scores = StepScores.empty(len(texts))
        if self.config.mode == "paper":
            self._paper_step(scores, questions, query_emb, embeddings, usable, reasoning, correct, step)
        else:
            self._reference_step(scores, questions, query_emb, embeddings, usable, reasoning, correct)
        return scores

    def _insert(self, q: str, q_emb: np.ndarray, emb: np.ndarray, reasoning: list[str], correct: list[float]) -> None:
        """Ms[q] += completions with R > tau_success; Mf[q] += those with R <= tau_failure."""
        r, c = np.asarray(correct), self.config
        for memory, chosen in ((self.success, r > c.tau_success), (self.failure, r <= c.tau_failure)):
            memory.add(q, q_emb, emb[chosen], [t for t, keep in zip(reasoning, chosen) if keep])

    def _paper_step(self, scores, questions, query_emb, embeddings, usable, reasoning, correct, step) -> None:
        """Group by group: score usable completions against the memories as they were, normalise, insert."""
        c = self.config
        scores.explore_active = c.exploration and step >= c.explore_warmup_steps
        for q, lo, hi in _groups(questions):
            rows = lo + np.flatnonzero(usable[lo:hi])
            if len(rows) == 0:
                continue
            a = embeddings[rows]
            stored, _, _ = self.success.retrieve(query_emb[q], c.k)
            if len(stored):
                raw = exploit_scores(a, stored)
                scores.exploit[rows] = scores.exploit_norm[rows] = self._normalise_group(self.exploit_window, raw)
                scores.exploit_raw[rows] = raw
            if scores.explore_active:
                stored, _, _ = self.failure.retrieve(query_emb[q], c.k)
                if len(stored):
                    raw = explore_scores(a, stored)
                    scores.explore[rows] = scores.explore_norm[rows] = self._normalise_group(self.explore_window, raw)
                    scores.explore_raw[rows] = raw
            self._insert(q, query_emb[q], a, [reasoning[i] for i in rows], [correct[i] for i in rows])

    def _normalise_group(self, window: deque[float], raw: np.ndarray) -> np.ndarray:
        """Push a group's raw scores, then min-max them over the window and the group: values in [0, 1]."""
        window.extend(raw.tolist())
        lo = min(min(window), float(raw.min()))
        hi = max(max(window), float(raw.max()))
        return (raw - lo) / (hi - lo + self.config.eps)

    def _reference_step(self, scores, questions, query_emb, embeddings, usable, reasoning, correct) -> None:
        """One usable completion at a time, as the reference code: insert, retrieve, push, normalise."""
        c = self.config
        for i, q in enumerate(questions):
            if not usable[i]:
                continue
            self._insert(q, query_emb[q], embeddings[i : i + 1], reasoning[i : i + 1], correct[i : i + 1])
            a = embeddings[i : i + 1]
            stored, _, _ = self.success.retrieve(query_emb[q], c.k)
            if len(stored):
                raw = float(exploit_scores(a, stored)[0])
                scores.exploit[i] = _normalise_reference(self.exploit_window, raw, degenerate=1.0 + raw)
                scores.exploit_raw[i], scores.exploit_norm[i] = raw, scores.exploit[i]
            if c.exploration and self.failure.num_keys >= c.explore_warmup_failure_keys:
                scores.explore_active = True
                stored, _, _ = self.failure.retrieve(query_emb[q], c.k)
                if len(stored) == 0:
                    scores.explore[i] = 1.0
                    continue
                raw = float(explore_scores(a, stored)[0])
                scores.explore[i] = _normalise_reference(self.explore_window, raw, degenerate=0.0)
                scores.explore_raw[i], scores.explore_norm[i] = raw, scores.explore[i]

    def _log_metrics(
        self, log_metric: Callable[[str, float], None], scores: StepScores, correct: list[float], seconds: float
    ) -> None:
        """Report raw/normalised means, overall and split by the completion's correctness (only what was
        scored), memory sizes and time. The split shows whether the memory reward echoes correctness."""
        is_correct = np.asarray(correct) > self.config.tau_success
        for name, values in (("exploit_raw", scores.exploit_raw), ("exploit_norm", scores.exploit_norm),
                             ("explore_raw", scores.explore_raw), ("explore_norm", scores.explore_norm)):
            for suffix, chosen in (("", slice(None)), ("_correct", is_correct), ("_wrong", ~is_correct)):
                scored = values[chosen][~np.isnan(values[chosen])]
                if len(scored):
                    log_metric(f"memory/{name}{suffix}_mean", float(scored.mean()))
        log_metric("memory/success_keys", float(self.success.num_keys))
        log_metric("memory/success_entries", float(self.success.num_entries))
        log_metric("memory/failure_keys", float(self.failure.num_keys))
        log_metric("memory/failure_entries", float(self.failure.num_entries))
        log_metric("memory/explore_active", float(scores.explore_active))
        log_metric("memory/seconds", seconds)

    # ---- persistence -------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike, step: int | None = None) -> None:
        """Write both memories, the windows, the call counter and the training step they belong to, so a
        resumed run gives the same rewards."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.success.save(directory / SUCCESS_FILE)
        self.failure.save(directory / FAILURE_FILE)
        state = {
            "format_version": STATE_FORMAT_VERSION,
            "name": self.__name__,
            "dim": self.encoder.dim,
            "config": asdict(self.config),
            "calls": self.calls,
            "step": step,
            "windows": {"exploit": list(self.exploit_window), "explore": list(self.explore_window)},
            "files": {name: _file_sha256(directory / name) for name in (SUCCESS_FILE, FAILURE_FILE)},
        }
        state["sha256"] = hashlib.sha256(_canonical_json(state)).hexdigest()
        path = directory / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(state, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, directory: str | os.PathLike, step: int | None = None) -> None:
        """Replace this reward's state with a saved one, refusing corrupt files, a mismatched config, or
        (given `step`) a state saved at another training step than the checkpoint it is loaded with."""
        directory = Path(directory)
        state = read_state(directory)
        path = directory / STATE_FILE
        if state["dim"] != self.encoder.dim:
            raise MemoryFileError(
                f"memory state {path} has dim {state['dim']}, but the encoder gives {self.encoder.dim}"
            )
        if step is not None and state.get("step") != step:
            raise MemoryFileError(
                f"memory state {path} was saved at step {state.get('step')}, but its checkpoint is at step {step} "
                "(copied from another checkpoint?)"
            )
        mine = asdict(self.config)
        for name in _STRUCTURAL_FIELDS:
            if state["config"].get(name) != mine[name]:
                raise MemoryFileError(
                    f"memory state {path} was saved with {name}={state['config'].get(name)!r}, "
                    f"but this run has {name}={mine[name]!r}"
                )
        c = self.config
        self.success = EpisodicMemory.load(directory / SUCCESS_FILE, self.encoder.dim, c.max_keys, c.max_per_key)
        self.failure = EpisodicMemory.load(directory / FAILURE_FILE, self.encoder.dim, c.max_keys, c.max_per_key)
        self.exploit_window = deque(state["windows"]["exploit"], maxlen=c.window)
        self.explore_window = deque(state["windows"]["explore"], maxlen=c.window)
        self.calls = state["calls"]


def read_state(directory: str | os.PathLike) -> dict:
    """A saved reward's state (memory_state.json) once verified: its format, its sha256 and the sha256 of each
    memory file it names. Resume (`MemoryReward.load`) and `memoryr memory inspect` both read it through here."""
    directory = Path(directory)
    path = directory / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        claimed = state.pop("sha256")
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise MemoryFileError(f"memory state {path} is missing or unreadable: {e}") from None
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise MemoryFileError(
            f"memory state {path} has format_version {state.get('format_version')!r}, expected {STATE_FORMAT_VERSION}"
        )
    if hashlib.sha256(_canonical_json(state)).hexdigest() != claimed:
        raise MemoryFileError(f"memory state {path} fails its sha256 checksum (corrupt or edited)")
    for name, digest in state["files"].items():
        if not (directory / name).is_file() or _file_sha256(directory / name) != digest:
            raise MemoryFileError(f"memory file {directory / name} is missing or does not match {path}")
    return state
