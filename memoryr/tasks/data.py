"""Math problem sets as lists of `Problem(question, answer)`, from a local file, a data folder, or the hub.

Task names: `gsm8k`, `math500`, `aime24`, `numina-tir`, `reasoning-gym:<task>` (generated offline),
and `jsonl:PATH` (any JSON Lines file with configurable fields). Resolution order for the named
sets: an explicit path, then the data folder (`data_dir` / MEMORYR_DATA_DIR), then the Hugging Face
hub through `datasets`. A malformed row is an error naming the file, line and field.

Splits keep training, checkpoint selection and final numbers apart. `validation` is carved from
the training data: for fixed sets (GSM8K, NuminaMath-TIR, a `jsonl:` file) it is the last
`validation_size` problems of the training split, which `train` then leaves out (the same slice
at every seed); a reasoning-gym task draws `train`, `test` and `validation` from three seed
streams, and drops from `test` every training question and from `validation` every training and
test question, so the three are disjoint.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

TASKS = ("gsm8k", "math500", "aime24", "numina-tir", "reasoning-gym:<task>", "jsonl:PATH")
VALIDATION = "validation"
_STREAMS = {"train": 0, "test": 1_000_003, VALIDATION: 2_000_006}  # reasoning-gym: seed offset of each split


class DataError(RuntimeError):
    """Data that cannot be found or read; the message names what and where."""


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # the gold final answer, as a string


@dataclass(frozen=True)
class _Source:
    local: str  # path of the split inside a data folder, with {split}
    hub: tuple[str, str | None]  # (hub id, config name)
    question: str
    answer: str
    splits: tuple[str, ...]


_SOURCES = {
    "gsm8k": _Source("gsm8k/{split}.jsonl", ("openai/gsm8k", "main"), "question", "answer", ("train", "test")),
    "math500": _Source("math500/{split}.jsonl", ("HuggingFaceH4/MATH-500", None), "problem", "answer", ("test",)),
    "aime24": _Source("aime24/{split}.jsonl", ("HuggingFaceH4/aime_2024", None), "problem", "answer", ("test",)),
    "numina-tir": _Source(
        "numina-tir/{split}.jsonl", ("AI-MO/NuminaMath-TIR", None), "problem", "solution", ("train", "test")
    ),
}


def data_dir(explicit: str | None = None) -> Path | None:
    """The data folder: the explicit setting, else MEMORYR_DATA_DIR, else none."""
    value = explicit or os.environ.get("MEMORYR_DATA_DIR")
    return Path(value).expanduser() if value else None


def parse_task_config(text: str | None) -> dict | None:
    """reasoning-gym generator options from their JSON text (None when unset); anything but an object is an error."""
    if text is None:
        return None
    try:
        options = json.loads(text)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        raise ValueError(f"task_config must be a JSON object, got {text!r}")
    return options


def gsm8k_gold(solution: str) -> str:
    """GSM8K's final answer: what follows `####`, thousands commas removed."""
    if "####" not in solution:
        raise ValueError("no '#### N' final answer")
    return solution.split("####")[-1].strip().replace(",", "")


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} in a solution (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def read_jsonl(path: Path, question_field: str, answer_field: str, gold=None) -> list[Problem]:
    """Problems from a JSON Lines file; `gold` maps the answer field to the final answer."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    problems = []
    with open(path, "rb") as f:  # decoded line by line, so a byte that is not UTF-8 is told by its line
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{line_no}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                                "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_no}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            for field in (question_field, answer_field):
                if field not in row:
                    raise DataError(f"{path}:{line_no}: missing field {field!r} (has: {', '.join(row)})")
                if not isinstance(row[field], (str, int, float)) or str(row[field]).strip() == "":
                    raise DataError(f"{path}:{line_no}: field {field!r} is empty or not text")
            answer = str(row[answer_field])
            if gold is not None:
                try:
                    answer = gold(answer)
                except ValueError as e:
                    raise DataError(f"{path}:{line_no}: field {answer_field!r}: {e}") from None
            problems.append(Problem(str(row[question_field]), answer))
    return problems


def _hub_rows(hub_id: str, config: str | None, split: str) -> list[dict]:
    try:
        import datasets

        return list(datasets.load_dataset(hub_id, config, split=split))
    except Exception as e:  # any hub failure becomes one clear line
        raise DataError(
            f"could not load {hub_id} ({split}) from the hub ({type(e).__name__}); "
            "point --data_dir or MEMORYR_DATA_DIR at a local copy"
        ) from None


def _numina_gold(solution: str) -> str:
    boxed = last_boxed(solution)
    if boxed is None:
        raise ValueError("no \\boxed{} answer in the solution")
    return boxed


def _carves(split: str, validation_size: int) -> bool:
    """Whether a fixed set's split comes from carving its training split (validation, or train minus it)."""
    return split == VALIDATION or (split == "train" and validation_size > 0)


def carve_validation(problems: list[Problem], split: str, size: int, name: str) -> list[Problem]:
    """Split a training pool: `validation` is its last `size` problems, `train` the rest."""
    if size < 1:
        raise DataError(f"{name}: the {VALIDATION} split is empty (validation_size is {size}); set validation_size >= 1")
    if size >= len(problems):
        raise DataError(f"{name}: validation_size {size} leaves no training problems (the training split has {len(problems)})")
    return problems[-size:] if split == VALIDATION else problems[:-size]


def _load_named(name: str, split: str, path: str | None, folder: Path | None, validation_size: int) -> list[Problem]:
    source = _SOURCES[name]
    if _carves(split, validation_size) and "train" in source.splits:
        return carve_validation(_load_named(name, "train", path, folder, 0), split, validation_size, name)
    if split not in source.splits:
        raise DataError(f"{name} has no split {split!r}; it has: {', '.join(source.splits)}")
    gold = {"gsm8k": gsm8k_gold, "numina-tir": _numina_gold}.get(name)
    local = Path(path) if path else (folder / source.local.format(split=split) if folder else None)
    if local is not None and (path or local.exists()):
        return read_jsonl(local, source.question, source.answer, gold)
    rows = _hub_rows(*source.hub, split)
    problems, skipped = [], 0
    for row in rows:
        try:
            answer = gold(str(row[source.answer])) if gold else str(row[source.answer])
        except ValueError:
            skipped += 1
            continue
        problems.append(Problem(str(row[source.question]), answer))
    if skipped:
        print(f"[memoryr] {name}/{split}: skipped {skipped} of {len(rows)} rows with no final answer")
    return problems


def _reasoning_gym(task: str, split: str, size: int, seed: int, options: dict) -> list[Problem]:
    """Generated problems: each split its own seed stream, held-out splits minus the questions of the others."""
    try:
        import reasoning_gym
    except ImportError:
        raise DataError("reasoning-gym tasks need the 'gym' extra: pip install reasoning-gym") from None
    if split not in _STREAMS:
        raise DataError(f"reasoning-gym:{task} has no split {split!r}; it has: {', '.join(_STREAMS)}")

    def generate(stream: str) -> list[Problem]:
        try:
            items = reasoning_gym.create_dataset(task, size=size, seed=seed + _STREAMS[stream], **options)
        except Exception as e:
            raise DataError(f"reasoning-gym task {task!r} could not be created: {e}") from None
        return [Problem(item["question"], str(item["answer"])) for item in items]

    if split == "train":
        return generate("train")
    others = ["train"] if split == "test" else ["train", "test"]
    seen = {p.question for stream in others for p in generate(stream)}
    held_out = [p for p in generate(split) if p.question not in seen]
    print(f"[memoryr] {task}/{split}: dropped {size - len(held_out)} of {size} generated problems "
          f"also in {' or '.join(others)}")
    return held_out


def load_problems(
    task: str,
    split: str = "train",
    *,
    path: str | None = None,
    data_dir_setting: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    size: int = 1000,
    shuffle: bool = False,
    question_field: str = "question",
    answer_field: str = "answer",
    task_config: dict | None = None,
    validation_size: int = 0,
) -> list[Problem]:
    """Load a task's split; `limit` keeps the first n (after a seeded shuffle when `shuffle`).

    `size` and `task_config` (generator options) apply to reasoning-gym tasks only; `validation_size`
    to fixed sets, whose `validation` split it carves from (and removes from) `train`.
    """
    if task.startswith("jsonl:"):
        problems = read_jsonl(Path(task[len("jsonl:") :]), question_field, answer_field)
        if _carves(split, validation_size):
            problems = carve_validation(problems, split, validation_size, task)
    elif task.startswith("reasoning-gym:"):
        problems = _reasoning_gym(task.split(":", 1)[1], split, size, seed, task_config or {})
    elif task in _SOURCES:
        problems = _load_named(task, split, path, data_dir(data_dir_setting), validation_size)
    else:
        raise DataError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if not problems:
        raise DataError(f"task {task!r} ({split}) has no problems")
    if shuffle:
        problems = problems[:]
        random.Random(seed).shuffle(problems)
    return problems[:limit] if limit else problems

