"""A test set no run of a sweep has seen: problems disjoint from every run's training and validation problems.

Study 2 scored each seed on its own test split (the seed's test stream minus its training stream), so its seeds
shared nearly, not exactly, the same problems, and a seed's test problems could be another seed's training or
validation problems. A sweep that compares arms over seeds and over problems wants one fixed set for every run:
`memoryr sweep SWEEP.yaml --test-set FILE` writes it as JSONL (question, answer), drawn from the task's test
stream at `--test-seed` and stripped of every question any (recipe, seed) run of the sweep trains on or chooses
best/ on; recipes then name it as their `test_task` (`jsonl:FILE`).
"""

from __future__ import annotations

import json
from pathlib import Path

from memoryr.evaluation.sweep import grid, load_sweep
from memoryr.tasks.data import DataError, Problem, load_problems, parse_task_config
from memoryr.training.config import parse_config
from memoryr.training.train import load_split

CANDIDATES_PER_PROBLEM = 5  # generated candidates per wanted problem: duplicates and seen questions are dropped


def seen_questions(sweep_path: Path) -> tuple[set[str], tuple[str, str | None]]:
    """Every question a run of the sweep trains on or is validated on, and the runs' (task, task_config)."""
    sweep = load_sweep(sweep_path)
    seen: set[str] = set()
    tasks = set()
    for recipe, seed in grid(sweep):
        script, training, _ = parse_config(["--config", str(recipe), *sweep.overrides, "--seed", str(seed)])
        tasks.add((script.task, script.task_config))
        seen |= {p.question for p in load_split(script, script.task, script.train_split, script.train_limit, seed)}
        if script.eval_limit > 0:
            eval_task = script.eval_task or script.task
            seen |= {p.question for p in load_split(script, eval_task, script.eval_split, script.eval_limit, seed)}
    if len(tasks) != 1:
        raise DataError(f"the sweep's recipes train on {len(tasks)} different tasks; a shared test set needs one")
    return seen, tasks.pop()


def disjoint_test_set(sweep_path: Path, seed: int, size: int) -> list[Problem]:
    """`size` distinct problems of the sweep's task from its test stream at `seed`, none of them seen by any run."""
    if size < 1:
        raise ValueError(f"--test-size must be at least 1, got {size}")
    seen, (task, task_config) = seen_questions(sweep_path)
    if not task.startswith("reasoning-gym:"):
        raise DataError(f"a disjoint test set is drawn from a generated task (reasoning-gym:...), not {task!r}")
    candidates = load_problems(task, "test", seed=seed, size=CANDIDATES_PER_PROBLEM * size,
                               task_config=parse_task_config(task_config))
    fresh, taken = [], set(seen)
    for problem in candidates:  # in stream order, each question once
        if problem.question not in taken:
            taken.add(problem.question)
            fresh.append(problem)
    if len(fresh) < size:
        raise DataError(f"only {len(fresh)} of {len(candidates)} generated problems are new to every run; "
                        f"ask for fewer than {size}")
    print(f"[memoryr] test set: {size} problems of {task} (seed {seed}), none of the {len(seen)} questions "
          "the sweep's runs train or validate on")
    return fresh[:size]


def write_test_set(path: Path, problems: list[Problem]) -> None:
    """The problems as JSONL with `question` and `answer`, the fields `jsonl:` tasks read by default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question": p.question, "answer": p.answer}) + "\n" for p in problems))
