"""Human-readable view of saved memories: sizes, newest entries, and what a question retrieves.

Public API:
    find_memory_dir(path) -> Path: the memory folder for a memory, checkpoint or run folder.
    inspect_memory(path, query=None, k=1, encoder_factory=SentenceEncoder) -> str
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from memoryr.memory.encoder import Encoder, SentenceEncoder
from memoryr.memory.episodic import EpisodicMemory, MemoryFileError
from memoryr.memory.rewards import FAILURE_FILE, STATE_FILE, SUCCESS_FILE, read_state

NEWEST_SHOWN = 3
RESPONSES_SHOWN = 3


def _is_memory_dir(path: Path) -> bool:
    """Whether a folder holds saved memories."""
    return (path / SUCCESS_FILE).is_file() and (path / FAILURE_FILE).is_file()


def find_memory_dir(path: str | Path) -> Path:
    """The memory folder itself, a checkpoint's `memory/`, else a run's newest `checkpoint-*/memory`."""
    path = Path(path)
    for candidate in (path, path / "memory"):
        if _is_memory_dir(candidate):
            return candidate
    checkpoints = [p for p in path.glob("checkpoint-*/memory") if re.fullmatch(r"checkpoint-\d+", p.parent.name)]
    checkpoints = [p for p in checkpoints if _is_memory_dir(p)]
    if not checkpoints:
        raise MemoryFileError(
            f"no saved memory under {path}: expected {SUCCESS_FILE} and {FAILURE_FILE} in it, "
            f"in its memory/ folder, or in a checkpoint-*/memory/ folder"
        )
    return max(checkpoints, key=lambda p: int(p.parent.name.split("-")[1]))


def _short(text: str, width: int) -> str:
    """One line of at most `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe(label: str, memory: EpisodicMemory) -> list[str]:
    """Size line plus the newest questions with their newest responses."""
    lines = [
        f"{label}: {memory.num_keys} questions, {memory.num_entries} responses "
        f"(limits: {memory.max_keys} questions x {memory.max_per_key} responses, dim {memory.dim})"
    ]
    for key in reversed(memory.key_texts[-NEWEST_SHOWN:]):
        responses = memory.responses(key)
        lines.append(f"  Q: {_short(key, 100)}  [{len(responses)} stored]")
        lines += [f"     - {_short(r, 100)}" for r in reversed(responses[-RESPONSES_SHOWN:])]
    return lines


def _nearest(label: str, memory: EpisodicMemory, query_emb, k: int) -> list[str]:
    """The k stored questions nearest the query, with cosine similarity and newest stored reasoning."""
    hits = memory.top_keys(query_emb, k)
    lines = [f"nearest {label} (top {k} questions by cosine similarity):"]
    if not hits:
        lines.append("  (memory is empty)")
    for key, sim in hits:
        responses = memory.responses(key)
        lines.append(f"  cos={sim:.3f}  Q: {_short(key, 90)}  [{len(responses)} stored]")
        lines += [f"     - {_short(r, 100)}" for r in reversed(responses[-RESPONSES_SHOWN:])]
    return lines


def inspect_memory(
    path: str | Path,
    query: str | None = None,
    k: int = 1,
    encoder_factory: Callable[[], Encoder] = SentenceEncoder,
) -> str:
    """Report on the saved memories at `path`; with a query, what Ms and Mf would retrieve for it."""
    if k < 1:
        raise ValueError(f"--k must be >= 1 (query keys to retrieve), got {k}")
    directory = find_memory_dir(path)
    lines = [f"memory folder: {directory}"]
    if (directory / STATE_FILE).is_file():  # checked as resume checks it: an edited state is refused, not shown
        state = read_state(directory)
        config = state["config"]
        lines.append(
            f"reward: {state['name']} (mode {config['mode']}, k={config['k']}, window {config['window']}), "
            f"{state['calls']} reward calls"
        )
    success = EpisodicMemory.load(directory / SUCCESS_FILE)
    failure = EpisodicMemory.load(directory / FAILURE_FILE)
    lines += _describe("successes (Ms)", success)
    lines += _describe("failures (Mf)", failure)
    if query is not None:
        encoder = encoder_factory()
        if encoder.dim != success.dim:
            raise MemoryFileError(
                f"memory at {directory} holds {success.dim}-d embeddings but the encoder gives {encoder.dim}-d"
            )
        query_emb = encoder.encode_queries([query])[0]
        lines.append(f"query: {_short(query, 100)}")
        lines += _nearest("successes", success, query_emb, k)
        lines += _nearest("failures", failure, query_emb, k)
    return "\n".join(lines)
