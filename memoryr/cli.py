"""The `memoryr` command: train, eval, report, sweep, models, memory, bench.

Each subcommand parses its own arguments and calls one function of the package. Expected failures
(bad input, missing data or packages) print one `error:` line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TRAIN_HELP = """usage: memoryr train --config recipes/NAME.yaml [--key value ...]

Train a model with GRPO (TRL) and the rewards named in the recipe. Every field of memoryr's
ScriptArguments, TRL's GRPOConfig and ModelConfig can be set in the YAML recipe or overridden
here, e.g.:

  memoryr train --config recipes/gsm8k-r1-cpu.yaml --model_name_or_path tiny-random \\
      --max_steps 3 --output_dir runs/x
  memoryr train --config recipes/gsm8k-r1-cpu.yaml --output_dir runs/x --resume true

The console shows one progress bar with the step's reward, correctness, length, entropy and
memory sizes; every metric goes to RUN/metrics.jsonl and TensorBoard (`--disable_tqdm true`
prints each step's whole dict instead). `memoryr train --help-all` lists every field with its
help text.
"""


def _train(argv: list[str]) -> None:
    if not argv or "-h" in argv or "--help" in argv:
        print(TRAIN_HELP)
        return
    from memoryr.training.config import DATACLASSES, parse_config
    from memoryr.training.progress import silence_library_deprecations

    silence_library_deprecations()  # before the recipe is parsed: transformers warns about one of its keys

    if argv[0] == "--help-all":
        from trl import TrlParser

        TrlParser(DATACLASSES).print_help()
        return
    script_args, training_args, model_args = parse_config(argv)
    from memoryr.training.train import train

    out = train(script_args, training_args, model_args)
    from memoryr.evaluation.summary import summarise_run

    print(summarise_run(out))


def _models(argv: list[str]) -> None:
    from memoryr.models import ALIASES, cache_dir, is_prepared, resolve_model

    parser = argparse.ArgumentParser(prog="memoryr models", description="List or prepare policy model aliases.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="Show the aliases, whether each is prepared, and the cache folder.")
    prepare = sub.add_parser("prepare", help="De-quantise / build an alias into the cache (MEMORYR_CACHE moves it).")
    prepare.add_argument("name", choices=sorted(ALIASES), metavar="NAME", help=f"one of: {', '.join(ALIASES)}")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(f"cache: {cache_dir()}")
        for alias in ALIASES.values():
            state = "prepared" if is_prepared(alias.name) else "not prepared"
            print(f"  {alias.name:<30} {state:<13} {alias.description}")
        print("Any other name is a Hugging Face id or a local folder, passed through.")
    else:
        print(resolve_model(args.name))


def _memory(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="memoryr memory", description="Look inside saved episodic memories.")
    sub = parser.add_subparsers(dest="action", required=True)
    inspect = sub.add_parser("inspect", help="Sizes, newest entries, and what a question retrieves.")
    inspect.add_argument("path", metavar="RUN_OR_CHECKPOINT", help="a run folder, a checkpoint-N folder or a memory folder")
    inspect.add_argument("--query", help="a question: show the nearest stored successful and failed reasoning")
    inspect.add_argument("--k", type=int, default=1, help="query keys to retrieve (default 1)")
    args = parser.parse_args(argv)
    from memoryr.memory.inspect import inspect_memory

    print(inspect_memory(args.path, query=args.query, k=args.k))


def _bench(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="memoryr bench", description="Benchmarks: print figures, assert nothing.")
    sub = parser.add_subparsers(dest="what", required=True)
    memory = sub.add_parser("memory", help="Memory reward cost: encode / retrieve+score / update per completion.")
    memory.add_argument("--keys", type=int, nargs="+", default=[1000, 10000], help="stored query keys (default 1000 10000)")
    memory.add_argument("--per-key", type=int, default=100, help="responses per key (default 100)")
    memory.add_argument("--group", type=int, default=16, help="completions per group, G (default 16)")
    memory.add_argument("--steps", type=int, default=50, help="timed groups per size (default 50)")
    memory.add_argument("--device", default="auto",
                        help="encoder device: auto (this machine's accelerator, else cpu), cpu, cuda, cuda:N (default auto)")
    memory.add_argument("--step-completions", type=int, default=256,
                        help="completions per training step (default 256: the paper's 16 prompts x 16)")
    memory.add_argument("--step-seconds", type=float,
                        help="a training step's seconds (e.g. from `bench step`): prints the memory reward's share of it")
    sub.add_parser("eval", help="Evaluation paths timed (pre-fill, decoding, padding) and compared (see --help).",
                   add_help=False)
    sub.add_parser("step", help="Time GRPO steps of a recipe under CPU setting variants (see --help).", add_help=False)
    sub.add_parser("sweep", help="Runs/hour of a short sweep with --jobs 2 against --jobs 1 (see --help).", add_help=False)
    sub.add_parser("study", help="Where full-length study runs spend their time, per phase and variant (see --help).",
                   add_help=False)
    if argv[:1] == ["eval"]:
        from memoryr.bench.eval import bench_eval_cli

        bench_eval_cli(argv[1:])
        return
    if argv[:1] == ["step"]:
        from memoryr.bench.step import main as bench_step_main

        bench_step_main(argv[1:])
        return
    if argv[:1] == ["sweep"]:
        from memoryr.bench.sweep import main as bench_sweep_main

        bench_sweep_main(argv[1:])
        return
    if argv[:1] == ["study"]:
        from memoryr.bench.study import main as bench_study_main

        bench_study_main(argv[1:])
        return
    args = parser.parse_args(argv)
    from accelerate import PartialState

    from memoryr.bench.memory import format_memory_bench, run_memory_bench
    from memoryr.memory.encoder import encoder_device, is_device

    if not is_device(args.device):
        memory.error(f"--device must be auto or a torch device (cpu, cuda, cuda:0, ...), got {args.device!r}")
    device = encoder_device(args.device, PartialState().device)
    results = run_memory_bench(tuple(args.keys), args.per_key, args.group, args.steps, device=device,
                               step_completions=args.step_completions, step_seconds=args.step_seconds)
    print(format_memory_bench(results))


def _eval(argv: list[str]) -> None:
    from memoryr.evaluation.evaluate import eval_cli

    eval_cli(argv)


def _report(argv: list[str]) -> None:
    from memoryr.evaluation.report import report_cli

    report_cli(argv)


def _sweep(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="memoryr sweep", description="Run a grid of recipes x seeds, resumably.")
    parser.add_argument("sweep", type=Path, metavar="SWEEP.yaml", help="the sweep file (see memoryr/evaluation/sweep.py)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="runs at once, each with cores // N threads; at most one per core "
                             "(default: the sweep file's jobs, else 1)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs finished so far (e.g. while the sweep is still going)")
    parser.add_argument("--test-set", type=Path, metavar="FILE",
                        help="train nothing: write FILE (JSONL) with --test-size problems of the sweep's task, none of "
                             "which any of its runs trains or validates on, for recipes' test_task: jsonl:FILE")
    parser.add_argument("--test-seed", type=int, default=1000, help="generator seed of --test-set (default 1000)")
    parser.add_argument("--test-size", type=int, default=1000, help="problems in --test-set (default 1000)")
    args = parser.parse_args(argv)
    from memoryr.evaluation.sweep import SweepStopped, report_finished, run_sweep

    if args.test_set is not None:
        from memoryr.training.test_set import disjoint_test_set, write_test_set

        write_test_set(args.test_set, disjoint_test_set(args.sweep, args.test_seed, args.test_size))
        print(f"test set: {args.test_set}")
        return
    if args.report_only:
        print(f"report: {report_finished(args.sweep)}")
        return
    try:
        report = run_sweep(args.sweep, jobs=args.jobs)
    except SweepStopped as e:  # its children are stopped; exit as the signal would (130 for SIGINT)
        print(e, file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    print(f"report: {report}")


COMMANDS = {
    "train": (_train, "GRPO training from a YAML recipe"),
    "eval": (_eval, "evaluate a model or run: pass@1, maj@k, pass@k"),
    "report": (_report, "plots, paper-style table and collapse flags for runs"),
    "sweep": (_sweep, "a grid of runs (recipes x seeds), resumable, then evals and a report"),
    "models": (_models, "list / prepare model aliases"),
    "memory": (_memory, "inspect saved episodic memories"),
    "bench": (_bench, "benchmarks (memory, eval, step)"),
}


def _usage() -> str:
    lines = ["usage: memoryr COMMAND [args]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`memoryr COMMAND --help` explains each one."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[0]][0](argv[1:])
    except Exception as e:
        from memoryr.errors import EXPECTED_ERRORS  # here, not above: it imports trl, ~5 s that `report` does not need

        if not isinstance(e, EXPECTED_ERRORS):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
