"""`memoryr bench sweep`: runs per hour of a short sweep with `--jobs 2` against `--jobs 1`.

Both sweeps train the same recipe at seeds 1..RUNS for STEPS steps (a checkpoint and a held-out
evaluation of EVAL_LIMIT problems at the last step), evaluate each run's best and last models on
EVAL_LIMIT test problems and write the report, each in a fresh temporary folder; the wall time is
the whole sweep's. `--jobs 1` gives its one run all the cores, `--jobs 2` half of them to each of
two runs. Words after the options (e.g. `--model_name_or_path tiny-random`) override the recipe in
both sweeps. It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from memoryr.evaluation.sweep import check_jobs, run_sweep, threads_per_run

JOBS = (1, 2)


def bench_sweep(config: Path, runs: int, steps: int, eval_limit: int, overrides: list[str]) -> list[dict]:
    """Time one sweep of `runs` short runs per number of jobs; one result per JOBS entry."""
    for jobs in JOBS:  # refuse before the first sweep, not after it
        check_jobs(jobs, "--jobs")
    budget = ["--max_steps", str(steps), "--save_steps", str(steps), "--eval_steps", str(steps),
              "--eval_limit", str(eval_limit)]
    results = []
    for jobs in JOBS:
        with tempfile.TemporaryDirectory(prefix=f"memoryr-bench-sweep-jobs{jobs}-") as tmp:
            spec = {"out": f"{tmp}/runs", "recipes": [str(config.resolve())], "seeds": list(range(1, runs + 1)),
                    "overrides": [*overrides, *budget], "eval_limit": eval_limit, "report": f"{tmp}/report"}
            path = Path(tmp) / "sweep.yaml"
            path.write_text(yaml.safe_dump(spec))
            start = time.perf_counter()
            run_sweep(path, jobs=jobs)
            wall = time.perf_counter() - start
        results.append({"jobs": jobs, "threads_per_run": threads_per_run(jobs), "runs": runs,
                        "wall_s": wall, "runs_per_hour": runs * 3600 / wall})
    return results


def format_sweep_bench(results: list[dict]) -> str:
    """A markdown table; the speed-up is relative to the first row (one job)."""
    lines = ["| jobs | threads per run | runs | wall s | runs/hour | speed-up |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['jobs']} | {r['threads_per_run']} | {r['runs']} | {r['wall_s']:.0f} | "
                     f"{r['runs_per_hour']:.1f} | {results[0]['wall_s'] / r['wall_s']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """CLI for `memoryr bench sweep`."""
    parser = argparse.ArgumentParser(prog="memoryr bench sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="recipe to run, e.g. recipes/arith-r1-cpu.yaml")
    parser.add_argument("--runs", type=int, default=4, help="runs per sweep: seeds 1..RUNS (default 4)")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps per run (default 3)")
    parser.add_argument("--eval-limit", type=int, default=16,
                        help="problems of the held-out evaluation in training and of each final one (default 16)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args, overrides = parser.parse_known_args(argv)
    if not args.config.is_file():
        raise FileNotFoundError(f"recipe {args.config} does not exist")
    for name in ("runs", "steps", "eval_limit"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    results = bench_sweep(args.config, args.runs, args.steps, args.eval_limit, [a for a in overrides if a != "--"])
    print(format_sweep_bench(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
