"""`memoryr bench study`: where the wall time of full-length study runs goes, phase by phase, per variant.

Each variant (a name, overrides of the runs and keys of the sweep file, from a YAML file such as
`benchmarks/study-variants.yaml`) runs the same sweep: the given recipes at one seed, at full length, `--jobs N`,
in a fresh folder, as a child process (its peak RSS is that process tree's largest). Each run's wall time is split into: start-up and final save
(the train phase minus transformers' `train_runtime`), GRPO steps (the sum of `step_time`), in-training
evaluations (`eval/seconds`), checkpoints and the rest of the training loop, and each test evaluation (the
sweep's `eval-best`/`eval-last` phases, from `logs/phases.jsonl`, its shards' seconds summed when the sweep split
it); then the sweep's report and its wall time.
Variants after the first are also compared with it for exactness: the same training completions, validation
accuracies and test verdicts. It prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from memoryr.evaluation.sweep import PHASES, check_jobs
from memoryr.jsonl_log import read_log
from memoryr.yaml_file import read_yaml

DEFAULT_RECIPES = ("recipes/study2-r1.yaml", "recipes/study2-memoryrplus-reference.yaml")
ROWS = ("start-up and final save", "GRPO steps", "in-training evaluations", "checkpoints and the rest",
        "test evaluation, best/", "test evaluation, final/")


def run_variant(name: str, overrides: list[str], recipes: list[Path], seed: int, jobs: int, eval_limit: int,
                folder: Path, sweep_keys: dict | None = None) -> dict:
    """One sweep of the recipes at `seed` with the variant's overrides (and sweep-file keys), in `folder`; its phase
    times and artefacts."""
    spec = {"out": str(folder / "runs"), "recipes": [str(r.resolve()) for r in recipes], "seeds": [seed],
            "overrides": overrides, "eval_limit": eval_limit, "jobs": jobs, "report": str(folder / "report"),
            **(sweep_keys or {})}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    print(f"[bench study] {name}: {len(recipes)} runs, --jobs {jobs}, overrides {overrides or 'none'}, sweep keys "
          f"{sweep_keys or 'none'}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "memoryr.cli", "sweep", str(path)])
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the {name} sweep failed (exit status {os.waitstatus_to_exitcode(status)}); see {folder}")
    phases = read_log(folder / "runs" / "logs" / PHASES)
    runs = {r.stem + f"-seed{seed}": phase_split(folder / "runs" / f"{r.stem}-seed{seed}", phases) for r in recipes}
    report = sum(p["seconds"] for p in phases if p["phase"] == "report")
    return {"variant": name, "overrides": overrides, "wall_s": wall, "runs_per_hour": len(recipes) * 3600 / wall,
            "peak_rss_gib": usage.ru_maxrss * 1024 / 2**30, "report_s": report, "runs": runs,
            "folder": str(folder)}


def phase_split(run: Path, phases: list[dict]) -> dict[str, float | None]:
    """A run's seconds per ROWS entry (None: the phase did not run, e.g. eval-last copied from eval-best); an
    evaluation run in shards (`eval-best 1/2`, ...) counts the seconds of all of them."""
    spent: dict[str, float] = {}
    for p in phases:
        if p["run"] == run.name:
            phase = p["phase"].split(" ")[0]
            spent[phase] = spent.get(phase, 0.0) + p["seconds"]
    rows = read_log(run / "metrics.jsonl")
    timed = [r for r in rows if "step_time" in r]  # each row's step_time: the mean over the steps since the last row
    steps = sum(r["step_time"] * (r["step"] - before) for r, before in zip(timed, [0] + [r["step"] for r in timed]))
    evals = sum(r["eval/seconds"] for r in rows if "eval/seconds" in r)
    runtime = next((r["train_runtime"] for r in rows if "train_runtime" in r), None)
    if runtime is None:
        raise ValueError(f"{run / 'metrics.jsonl'} has no end-of-training row: the run did not finish")
    return dict(zip(ROWS, (spent["train"] - runtime, steps, evals, runtime - steps - evals,
                           spent.get("eval-best"), spent.get("eval-last"))))


def variant_spec(name: str, spec: list | dict | None) -> tuple[list[str], dict]:
    """A variant's run overrides and sweep-file keys: a list is overrides alone; a mapping may hold `overrides` and
    `sweep` (keys of the sweep file, such as split_evaluations)."""
    if spec is None or isinstance(spec, list):
        return [str(a) for a in spec or []], {}
    if not isinstance(spec, dict) or set(spec) - {"overrides", "sweep"} or not isinstance(spec.get("sweep", {}), dict):
        raise ValueError(f"variant {name}: expected a list of overrides or a mapping with overrides and sweep, "
                         f"got {spec!r}")
    return [str(a) for a in spec.get("overrides") or []], dict(spec.get("sweep") or {})


def differences(first: dict, other: dict) -> list[str]:
    """What differs between two variants' runs: training completions, validation evaluations, test verdicts."""
    found = []
    for run in first["runs"]:
        a, b = (Path(v["folder"]) / "runs" / run for v in (first, other))
        for name in ("completions.jsonl", "evals.json"):
            if _text(a / name) != _text(b / name):
                found.append(f"{run}: {name} differs")
        for phase in ("eval-best", "eval-last"):
            if not (a / phase / "samples.jsonl").exists() or not (b / phase / "samples.jsonl").exists():
                continue
            old, new = ({r["index"]: r for r in read_log(x / phase / "samples.jsonl")} for x in (a, b))
            changed = sorted(i for i in old if old[i]["completions"] != new.get(i, {}).get("completions"))
            if changed:
                found.append(f"{run}: {phase} completions differ at problems {changed}")
    return found


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def format_study(results: list[dict]) -> str:
    """Per variant, a phase x run table in seconds; then the variants side by side (sums over runs) with ratios."""
    lines = []
    for result in results:
        runs = list(result["runs"])
        lines += [f"### {result['variant']}", "", "| phase (s) | " + " | ".join(runs) + " |",
                  "|---|" + "---|" * len(runs)]
        for row in ROWS:
            cells = [result["runs"][r][row] for r in runs]
            lines.append(f"| {row} | " + " | ".join("copied" if c is None else f"{c:.0f}" for c in cells) + " |")
        lines += [f"| report (the sweep's) | {result['report_s']:.0f} |" + " |" * (len(runs) - 1),
                  f"| **sweep wall** | **{result['wall_s']:.0f}** |" + " |" * (len(runs) - 1),
                  "", f"runs/hour {result['runs_per_hour']:.2f}, peak RSS {result['peak_rss_gib']:.2f} GiB", ""]
    if len(results) > 1:
        base = results[0]
        names = [r["variant"] for r in results]
        lines += ["| phase, summed over runs (s) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for row in ROWS:
            totals = [sum(r["runs"][run][row] or 0.0 for run in r["runs"]) for r in results]
            lines.append(f"| {row} | " + " | ".join(_vs(t, totals[0]) for t in totals) + " |")
        lines.append("| sweep wall | " + " | ".join(_vs(r["wall_s"], base["wall_s"]) for r in results) + " |")
        lines.append("| peak RSS GiB | " + " | ".join(f"{r['peak_rss_gib']:.2f}" for r in results) + " |")
    return "\n".join(lines)


def _vs(value: float, base: float) -> str:
    return f"{value:.0f} ({value / base:.2f}x)" if base else f"{value:.0f}"


def main(argv: list[str]) -> None:
    """CLI for `memoryr bench study`."""
    parser = argparse.ArgumentParser(prog="memoryr bench study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", type=Path, default=[Path(r) for r in DEFAULT_RECIPES],
                        help="recipes run at full length (default: study 2's R1 and Memory-R+ (reference))")
    parser.add_argument("--variants", type=Path, default=Path("benchmarks/study-variants.yaml"),
                        help="YAML of variants: name -> overrides, or {overrides, sweep} (default benchmarks/study-variants.yaml)")
    parser.add_argument("--only", nargs="+", help="run only these variants (in the file's order)")
    parser.add_argument("--seed", type=int, default=1, help="the runs' seed (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--eval-limit", type=int, default=500, help="test problems per evaluation (default 500)")
    parser.add_argument("--out", type=Path, help="keep the variants' sweeps here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    check_jobs(args.jobs, "--jobs")
    for recipe in args.recipes:
        if not recipe.is_file():
            raise FileNotFoundError(f"recipe {recipe} does not exist")
    variants = read_yaml(args.variants)
    unknown = sorted(set(args.only or []) - set(variants))
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; {args.variants} has {', '.join(variants)}")
    chosen = [(name, variant_spec(name, spec)) for name, spec in variants.items() if not args.only or name in args.only]
    with tempfile.TemporaryDirectory(prefix="memoryr-bench-study-") as tmp:
        root = args.out or Path(tmp)
        results = []
        for name, (overrides, sweep_keys) in chosen:
            folder = root / name
            folder.mkdir(parents=True, exist_ok=False)
            results.append(run_variant(name, overrides, args.recipes, args.seed, args.jobs, args.eval_limit, folder,
                                       sweep_keys))
        print(format_study(results))
        for other in results[1:]:
            found = differences(results[0], other)
            print(f"\n{other['variant']} against {results[0]['variant']}: "
                  + ("; ".join(found) if found else "the same training completions, validation and test completions"))
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2))
