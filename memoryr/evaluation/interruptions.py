"""Which runs were interrupted and resumed, and which trained on another data order than the runs they are paired with.

A run records each resume in run.json (`resumes`: from which checkpoint, at which step and epoch, when, with
which versions); a run recorded before memoryr did so says only `resume: true` in its config. A resume can
change what a run trains on: before memoryr drew each epoch's order from (seed, epoch), a run resumed in its
second or a later epoch replayed the first epoch's order. That shows in the data: the questions it trained on,
step by step, differ from those of the runs with the same seed and data settings, which draw the same order.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from memoryr.jsonl_log import read_log

# run.json settings that decide which question each step trains on (script, then training section)
ORDER_SETTINGS = {
    "script": ("task", "train_split", "train_limit", "shuffle_problems", "task_size", "task_config", "data_path",
               "question_field", "validation_size", "shots", "exemplars", "prefill", "system_prompt"),
    "training": ("seed", "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
                 "steps_per_generation", "generation_batch_size", "num_iterations", "shuffle_dataset"),
}


def resumes(record: dict) -> list[dict] | None:
    """A run record's resumes; None when it says it was resumed but not from where (recorded before memoryr
    listed resumes)."""
    if "resumes" in record:
        return record["resumes"]
    return None if record.get("config", {}).get("script", {}).get("resume") else []


def describe_resume(entry: dict) -> str:
    """One resume in words: `checkpoint-40 (step 40, epoch 1.25) on 2026-12-01T10:00:00+0000`."""
    if entry["from"] is None:
        return f"started over (no complete checkpoint) on {entry['at']}"
    return f"{entry['from']} (step {entry['step']}, epoch {entry['epoch']:g}) on {entry['at']}"


def questions_per_step(run: Path) -> list[str]:
    """What each logged step trained on: the end of its first logged prompt (the question, after the shots), in step
    order; [] when the run logged no completions. Runs with equal `order_key` render equal prompts."""
    path = Path(run) / "completions.jsonl"
    if not path.is_file():
        return []
    first: dict[int, str] = {}
    for row in read_log(path):
        first.setdefault(row["step"], row["prompt_tail"])
    return [first[step] for step in sorted(first)]


def order_key(record: dict) -> str:
    """The run's settings that fix its data order, as one comparable string."""
    config = record.get("config", {})
    return json.dumps({section: {key: config.get(section, {}).get(key) for key in keys}
                       for section, keys in ORDER_SETTINGS.items()}, sort_keys=True, default=str)


def order_divergences(orders: dict[str, tuple[str, list[str]]]) -> dict[str, dict]:
    """Runs whose questions per step differ from the other runs with the same order settings.

    `orders` maps a run's name to (its `order_key`, its `questions_per_step`). Runs are compared over the steps
    they all logged; a run is flagged when its sequence is not the one most of its group share (when no sequence
    has a majority, every run of the group is flagged). Each flag says the first differing step and how many of
    the compared steps differ.
    """
    groups: dict[str, list[str]] = {}
    for name, (key, questions) in orders.items():
        if questions:
            groups.setdefault(key, []).append(name)
    flags = {}
    for names in groups.values():
        if len(names) < 2:
            continue
        steps = min(len(orders[n][1]) for n in names)
        counts = Counter(tuple(orders[n][1][:steps]) for n in names)
        (common, top), *rest = counts.most_common()
        majority = common if not rest or top > rest[0][1] else None
        for name in names:
            mine = tuple(orders[name][1][:steps])
            if mine == majority:
                continue
            reference = majority or next(tuple(orders[n][1][:steps]) for n in names if orders[n][1][:steps] != list(mine))
            differ = [i + 1 for i, (a, b) in enumerate(zip(mine, reference)) if a != b]
            flags[name] = {"first_step": differ[0], "steps_differing": len(differ), "steps_compared": steps,
                           "majority": majority is not None}
    return flags


def interruption_table(runs: list[Path]) -> dict[str, dict]:
    """Per run folder: its resumes (None: resumed, checkpoint not recorded), whether its data order could be compared
    with another run's, and where it differs from the runs with the same order settings (None: it does not)."""
    records = {str(run): json.loads((Path(run) / "run.json").read_text()) for run in runs}
    orders = {name: (order_key(record), questions_per_step(Path(name))) for name, record in records.items()}
    keys = Counter(key for key, questions in orders.values() if questions)
    divergent = order_divergences(orders)
    return {
        name: {"resumes": resumes(record), "order_compared": bool(orders[name][1]) and keys[orders[name][0]] > 1,
               "data_order": divergent.get(name)}
        for name, record in records.items()
    }
