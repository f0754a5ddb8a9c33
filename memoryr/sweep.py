"""`memoryr sweep SWEEP.yaml`: a grid of runs (recipes x seeds), one after another, resumable.

Runs go seed by seed (every recipe at the first seed, then the second seed, ...), so a sweep stopped
half way still compares every method.

A finished run (one with `final/`) is skipped; an interrupted one continues from its last
checkpoint, memories included; a run interrupted before its first checkpoint starts again. After
training, each run's best and last models are evaluated on the held-out set (`eval-best/`,
`eval-last/`), and the report over all runs is written at the end, with each run's small
artefacts (metrics, evals, sampled completions, run record; no weights) copied beside it.
`--report-only` reports the runs finished so far. The sweep file:

    out: runs/cpu-study            # one folder per run: <recipe name>-seed<seed>
    recipes: [recipes/arith-r1-cpu.yaml, recipes/arith-memoryrplus-cpu.yaml]
    seeds: [1, 2, 3]
    overrides: [--max_steps, "60"] # optional: applied to every run
    eval_limit: 200                # held-out problems for the final evaluations
    report: results/cpu-study      # optional: where the report goes (default: <out>/report)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class SweepError(RuntimeError):
    """A run of the sweep failed; its own output above says why."""


@dataclass
class Sweep:
    out: Path
    recipes: list[Path]
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)
    eval_limit: int = 200
    report: Path | None = None


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file; every problem is one clear error."""
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must be a YAML mapping with out, recipes and seeds")
    unknown = set(raw) - {"out", "recipes", "seeds", "overrides", "eval_limit", "report"}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: out, recipes, seeds, overrides, eval_limit, report")
    for key in ("out", "recipes", "seeds"):
        if key not in raw:
            raise ValueError(f"{path}: missing {key!r}")
    recipes = [Path(r) for r in raw["recipes"]]
    missing = [str(r) for r in recipes if not r.is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: recipe(s) not found: {', '.join(missing)}")
    if not raw["seeds"] or not all(isinstance(s, int) for s in raw["seeds"]):
        raise ValueError(f"{path}: seeds must be a non-empty list of integers")
    return Sweep(
        out=Path(raw["out"]),
        recipes=recipes,
        seeds=list(raw["seeds"]),
        overrides=[str(o) for o in raw.get("overrides") or []],
        eval_limit=int(raw.get("eval_limit", 200)),
        report=Path(raw["report"]) if raw.get("report") else None,
    )


def run_dir(sweep: Sweep, recipe: Path, seed: int) -> Path:
    return sweep.out / f"{recipe.stem}-seed{seed}"


def _memoryr(*args: str) -> None:
    """Run a memoryr command in a fresh process (isolates memory and threads; a failure stops the sweep)."""
    cmd = [sys.executable, "-m", "memoryr.cli", *args]
    done = subprocess.run(cmd, env=os.environ.copy())
    if done.returncode != 0:
        raise SweepError(f"`memoryr {' '.join(args[:3])} ...` failed with exit status {done.returncode}")


def _train(sweep: Sweep, recipe: Path, seed: int, folder: Path) -> None:
    args = ["train", "--config", str(recipe), *sweep.overrides, "--seed", str(seed), "--output_dir", str(folder)]
    if any(folder.glob("checkpoint-*")):
        print(f"  resuming {folder} from its last checkpoint")
        args += ["--resume", "true"]
    elif folder.exists():
        shutil.rmtree(folder)  # interrupted before its first checkpoint: nothing to resume
    _memoryr(*args)


def _evaluate(sweep: Sweep, folder: Path) -> None:
    """Held-out evaluation of the best and last models with the run's own prompt settings."""
    record = json.loads((folder / "run.json").read_text())
    script, training = record["config"]["script"], record["config"]["training"]
    task = script["eval_task"] or script["task"]
    for name, model in (("best", folder / "best"), ("last", folder / "final")):
        results = folder / f"eval-{name}" / "results.json"
        if not model.exists() or (results.exists() and json.loads(results.read_text()).get("status") == "complete"):
            continue
        # the run's own seed, task size and generator options give the same held-out problems as in training
        args = ["eval", "--model", str(model), "--task", task, "--split", script["eval_split"],
                "--limit", str(sweep.eval_limit), "--shots", str(script["shots"]), "--exemplars", script["exemplars"],
                "--prefill", script["prefill"], "--grading", script["grading"], "--seed", str(record["seed"]),
                "--task-size", str(script["task_size"]), "--max-new-tokens", str(training["max_completion_length"]),
                "--output", str(folder / f"eval-{name}")]
        if script["task_config"]:
            args += ["--task-config", script["task_config"]]
        if script["data_dir"]:
            args += ["--data-dir", script["data_dir"]]
        _memoryr(*args)


def _eta(durations: list[float], remaining: int) -> str:
    if not durations:
        return "unknown"
    seconds = sum(durations) / len(durations) * remaining
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


ARTEFACTS = ("run.json", "metrics.jsonl", "evals.json", "completions.jsonl", "eval-best/results.json",
             "eval-last/results.json")  # small files worth keeping with the report; no weights


def collect(folders: list[Path], report_dir: Path) -> None:
    """Copy each run's small artefacts to `report_dir/runs/<run>/`, so the report travels with its data."""
    for folder in folders:
        for name in ARTEFACTS:
            if (folder / name).exists():
                target = report_dir / "runs" / folder.name / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / name, target)


def grid(sweep: Sweep) -> list[tuple[Path, int]]:
    """(recipe, seed) pairs in run order: every recipe at the first seed, then the next seed."""
    return [(recipe, seed) for seed in sweep.seeds for recipe in sweep.recipes]


def _write_report(sweep: Sweep, folders: list[Path]) -> Path:
    """`memoryr report` over the run folders, with their small artefacts copied beside it."""
    report_dir = sweep.report or sweep.out / "report"
    _memoryr("report", *map(str, folders), "--out", str(report_dir))
    collect(folders, report_dir)
    return report_dir


def report_finished(path: Path) -> Path:
    """Report the runs of a sweep that have finished so far (a sweep stopped part way); trains nothing."""
    sweep = load_sweep(path)
    folders = [run_dir(sweep, r, s) for r, s in grid(sweep)]
    finished = [f for f in folders if (f / "final").exists()]
    if not finished:
        raise SweepError(f"no finished run in {sweep.out} yet")
    print(f"{len(finished)} of {len(folders)} runs finished: {', '.join(f.name for f in finished)}")
    return _write_report(sweep, finished)


def run_sweep(path: Path) -> Path:
    """Train, evaluate and report every run of a sweep; returns the report folder."""
    sweep = load_sweep(path)
    runs = grid(sweep)
    durations: list[float] = []  # training + evaluation of the runs started from scratch in this call
    for i, (recipe, seed) in enumerate(runs, 1):
        folder = run_dir(sweep, recipe, seed)
        if (folder / "final").exists():
            print(f"[{i}/{len(runs)}] {folder.name}: finished, skipped")
            _evaluate(sweep, folder)
            continue
        print(f"[{i}/{len(runs)}] {folder.name}: training (time left for this sweep: {_eta(durations, len(runs) - i + 1)})")
        started, from_scratch = time.monotonic(), not any(folder.glob("checkpoint-*"))
        _train(sweep, recipe, seed, folder)
        _evaluate(sweep, folder)
        if from_scratch:  # a resumed run is shorter and would make the estimate too hopeful
            durations.append(time.monotonic() - started)
    return _write_report(sweep, [run_dir(sweep, r, s) for r, s in runs])
