"""`memoryr bench step`: where a GRPO step's time goes, and how CPU settings change it.

Each variant is a name plus command-line overrides of the recipe (and optional environment
variables), listed in a YAML file such as `benchmarks/cpu-levers.yaml`. Every variant trains for
`--steps` steps in a process of its own, so its peak RSS and thread settings are its own. Per step
it records its wall seconds, generation seconds and generated tokens/s, reward seconds (outcome
and memory apart), the rest of the step ("rest": log-probs, forward/backward, optimizer) and peak RSS; the summary is the
median over the steps after the first. It prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from memoryr.hardware import cpu_bf16_kind

BF16_FLAG = "--bf16"


def _timed_trainer_cls():
    """A MemoryrTrainer that times generation and rewards and writes one record per step (lazy: heavy import)."""
    from memoryr.train import MemoryrTrainer

    class TimedTrainer(MemoryrTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.parts: dict[str, float] = {}
            self.last_log = time.perf_counter()

        def _timed(self, name: str, fn, *args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - start
            return out

        def _generate(self, prompts):
            return self._timed("generate", super()._generate, prompts)

        def _calculate_rewards(self, *args, **kwargs):
            return self._timed("rewards", super()._calculate_rewards, *args, **kwargs)

        def log(self, logs, start_time=None):
            super().log(logs, start_time)
            record = self.state.log_history[-1]
            if "loss" not in record:
                return
            now, parts = time.perf_counter(), self.parts
            step_s, self.last_log, self.parts = now - self.last_log, now, {}
            generate, rewards = parts.get("generate", 0.0), parts.get("rewards", 0.0)
            memory = record.get("memory/seconds", 0.0)
            # completions generated per optimizer step, across micro-batches and processes
            completions = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            row = {
                "step": record["step"],
                "step_s": step_s,
                "generate_s": generate,
                "gen_tokens_per_s": record["completions/mean_length"] * completions / generate if generate else None,
                "outcome_reward_s": rewards - memory,
                "memory_reward_s": memory,
                "train_s": step_s - generate - rewards,
                "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "mean_length": record["completions/mean_length"],
            }
            with open(Path(self.args.output_dir) / "step_timings.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    return TimedTrainer


def run_worker(config: str, steps: int, overrides: list[str], out: Path) -> None:
    """Train `steps` steps of a recipe with the timed trainer; write the per-step records as JSON."""
    from memoryr.config import parse_config
    from memoryr.train import train

    with tempfile.TemporaryDirectory() as run_dir:
        argv = ["--config", config, *overrides, "--max_steps", str(steps), "--output_dir", run_dir,
                "--eval_limit", "0", "--save_strategy", "no", "--disable_tqdm", "true"]
        train(*parse_config(argv), trainer_cls=_timed_trainer_cls())
        lines = (Path(run_dir) / "step_timings.jsonl").read_text().splitlines()
        out.write_text(json.dumps([json.loads(line) for line in lines]))


def summarise(records: list[dict]) -> dict:
    """Medians over the steps after the first (the first pays for warm-up)."""
    steady = records[1:] or records
    keys = ["step_s", "generate_s", "gen_tokens_per_s", "outcome_reward_s", "memory_reward_s", "train_s", "mean_length"]
    summary = {k: statistics.median(r[k] for r in steady if r[k] is not None) for k in keys}
    summary["peak_rss_gb"] = max(r["peak_rss_gb"] for r in records)
    summary["steps_per_hour"] = 3600 / summary["step_s"]
    return summary


def load_variants(path: Path, bf16_kind: str | None) -> tuple[dict[str, dict], list[str]]:
    """Variants from YAML ({name: {args: [...], env: {...}}}); bf16 ones are skipped without bf16 units."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path} must map variant names to {{args: [...], env: {{...}}}}")
    variants, skipped = {}, []
    for name, spec in raw.items():
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"args", "env"}:
            raise ValueError(f"{path}: variant {name!r} may only have 'args' (a list) and 'env' (a mapping)")
        args = [str(a) for a in spec.get("args", [])]
        if bf16_kind is None and BF16_FLAG in args and args[args.index(BF16_FLAG) + 1].lower() == "true":
            skipped.append(name)
            continue
        variants[name] = {"args": args, "env": {k: str(v) for k, v in (spec.get("env") or {}).items()}}
    return variants, skipped


def format_table(results: dict[str, dict], baseline: str) -> str:
    """One row per variant with its medians and its steps/hour relative to the baseline."""
    head = (f"{'variant':<24} {'step s':>7} {'gen s':>7} {'gen tok/s':>9} {'rest s':>7} {'outcome s':>9} "
            f"{'memory s':>8} {'len':>5} {'RSS GB':>6} {'steps/h':>7} {'x base':>6}")
    lines = [head, "-" * len(head)]
    base = results[baseline]["steps_per_hour"] if baseline in results else None
    for name, s in results.items():
        ratio = s["steps_per_hour"] / base if base else float("nan")
        lines.append(f"{name:<24} {s['step_s']:>7.1f} {s['generate_s']:>7.1f} {s['gen_tokens_per_s']:>9.1f} "
                     f"{s['train_s']:>7.1f} {s['outcome_reward_s']:>9.3f} {s['memory_reward_s']:>8.3f} "
                     f"{s['mean_length']:>5.0f} {s['peak_rss_gb']:>6.2f} {s['steps_per_hour']:>7.0f} {ratio:>6.2f}")
    return "\n".join(lines)


def bench_step(config: str, variants_path: Path, steps: int, only: list[str] | None, json_out: Path | None) -> dict:
    """Run every variant in its own process and print the per-step figures and the summary table."""
    kind = cpu_bf16_kind()
    variants, skipped = load_variants(variants_path, kind)
    if only:
        unknown = set(only) - set(variants) - set(skipped)
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(sorted(unknown))}; {variants_path} has {', '.join(variants)}")
        variants = {k: v for k, v in variants.items() if k in only}
    print(f"CPU bf16 units: {kind or 'none'}; {os.cpu_count()} cores; recipe {config}; {steps} steps per variant")
    if skipped:
        print(f"skipped (need bf16 units): {', '.join(skipped)}")
    results, per_step = {}, {}
    for i, (name, spec) in enumerate(variants.items(), 1):
        print(f"[{i}/{len(variants)}] {name}: {' '.join(spec['args']) or '(recipe as is)'} {spec['env'] or ''}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "records.json"
            cmd = [sys.executable, "-m", "memoryr.bench_step", "--worker", "--config", config, "--steps", str(steps),
                   "--records", str(out), "--", *spec["args"]]
            done = subprocess.run(cmd, env={**os.environ, **spec["env"]}, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"  failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
                continue
            records = json.loads(out.read_text())
        for r in records:
            print(f"  step {r['step']}: {r['step_s']:.1f} s (generate {r['generate_s']:.1f} s, "
                  f"{r['gen_tokens_per_s'] or 0:.0f} tok/s; rest {r['train_s']:.1f} s; rewards {r['outcome_reward_s']:.3f} s "
                  f"+ memory {r['memory_reward_s']:.3f} s; peak RSS {r['peak_rss_gb']:.2f} GB)")
        per_step[name], results[name] = records, summarise(records)
    baseline = next(iter(variants), "")
    print()
    print(format_table(results, baseline))
    report = {"config": config, "steps": steps, "cpu_bf16": kind, "cores": os.cpu_count(),
              "summary": results, "per_step": per_step}
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str]) -> None:
    """CLI for `memoryr bench step` (and the per-variant worker processes it starts)."""
    parser = argparse.ArgumentParser(prog="memoryr bench step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="recipe to time, e.g. recipes/gsm8k-memoryrplus-cpu.yaml")
    parser.add_argument("--variants", type=Path, default=Path("benchmarks/cpu-levers.yaml"),
                        help="YAML of variants: {name: {args: [--key, value, ...], env: {VAR: value}}}")
    parser.add_argument("--steps", type=int, default=5, help="GRPO steps per variant (default 5; the first is warm-up)")
    parser.add_argument("--only", nargs="+", help="run only these variants")
    parser.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--records", type=Path, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args(argv)
    overrides = [a for a in overrides if a != "--"]
    if args.worker:
        run_worker(args.config, args.steps, overrides, args.records)
        return
    if not Path(args.config).is_file():
        raise FileNotFoundError(f"recipe {args.config} does not exist")
    if not args.variants.is_file():
        raise FileNotFoundError(f"variants file {args.variants} does not exist")
    bench_step(args.config, args.variants, args.steps, args.only, args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
