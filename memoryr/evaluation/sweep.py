"""`memoryr sweep SWEEP.yaml`: a grid of runs (recipes x seeds), N at a time, resumable and crash-safe.

Runs start seed by seed (every recipe at the first seed, then the second seed, ...), so a sweep
stopped half way still compares every method. A run is a chain of child processes: `memoryr train`,
then `memoryr eval` of its best and last models on the run's test split (`eval-best/`,
`eval-last/`). Once no run waits for a core, as at a sweep's end, each test evaluation is split into one
shard per job (`memoryr eval --shard`: the same batches, so the same completions), and a core that comes free
takes a shard still to start or final/'s evaluation, so no core idles while the last run evaluates. With
`--jobs N` (or `jobs: N`) N runs go at once, the cores split between them: each child gets
cores // N OpenMP/MKL/OpenBLAS threads, and more jobs than cores is refused (runs that share cores
slow each other down many times over). Each run's child output is appended to
`<out>/logs/<run>.log`; the console gets a line per event and, with several jobs, a progress line
per running run every 30 s (with one job, the child output itself).

A finished run (`final/` with its completion marker) is skipped; an unfinished one continues from
its newest complete checkpoint, memories included, or starts again when it has none. A failed run
lets the running ones finish, starts no new one and fails the sweep naming its log. SIGINT, SIGTERM
and SIGHUP stop every child before the sweep exits (on Linux a child also dies with a sweep killed
by SIGKILL), and one sweep at a time may use an out folder; rerunning the same command resumes.
Once a run's `final/` is complete its `checkpoint-N/` folders (resume points, 1.6 GB each for a
135M model with its optimizer state) are removed, unless `keep_checkpoints: true`; `best/` and
`final/` stay, and with `keep_weights: false` lose their weights (0.5 GB each for a 135M model) once both
are evaluated, keeping everything else (a 56-run study otherwise needs ~60 GB). The report over all runs
comes last, with each run's small artefacts (no weights) copied beside it; `--report-only` reports the runs
finished so far. `<out>/logs/phases.jsonl` gets a line per finished phase (train, eval-best, eval-last or a
shard of one such as `eval-best 1/2`, report) with its seconds. The sweep file:

    out: runs/cpu-study            # one folder per run: <recipe name>-seed<seed>
    recipes: [recipes/arith-r1-cpu.yaml, recipes/arith-memoryrplus-cpu.yaml]
    seeds: [1, 2, 3]
    overrides: [--max_steps, "60"] # optional: applied to every run
    eval_limit: 200                # optional: test problems for the final evaluations
    jobs: 2                        # optional: runs at once (default 1; `--jobs` wins)
    baseline: R1                   # optional: the method the report compares the others with
    report: results/cpu-study      # optional: where the report goes (default: <out>/report)
    keep_checkpoints: false        # optional: keep finished runs' checkpoint-N/ folders (default false)
    keep_weights: true             # optional: false removes best/'s and final/'s weights once evaluated (default true)
    split_evaluations: true        # optional: false runs each test evaluation in one process, even at the end, when
                                   # two at once would need too much memory (default true)
    untrained: [results/cpu-study/untrained/seed*]  # optional: `memoryr eval` folders (globs) of the untrained
                                   # model, compared with the runs' test evaluations of the same problems
    contrasts:                     # optional: named comparisons [method, baseline] the report adds, paired by seed
      memory: [Memory-R+, R1]
"""

from __future__ import annotations

import codecs
import ctypes
import glob
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from memoryr.checkpoints import (MARKER, RunLock, RunLockedError, checkpoints, crash_point, is_complete,
                                 latest_complete_checkpoint, refuse_link, remove_folder, staging, swap_in)
from memoryr.evaluation.evaluate import BATCH_SIZE
from memoryr.evaluation.interruptions import resumes
from memoryr.jsonl_log import read_log
from memoryr.models import WEIGHTS_REMOVED
from memoryr.yaml_file import read_yaml

KEYS = ("out", "recipes", "seeds", "overrides", "eval_limit", "jobs", "baseline", "report", "keep_checkpoints",
        "keep_weights", "split_evaluations", "untrained", "contrasts")
MODELS = {"eval-best": "best", "eval-last": "final"}  # evaluation phase -> model folder of the run
WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin")  # what keep_weights: false removes
PHASES = "phases.jsonl"  # in <out>/logs/: the seconds of each finished phase
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
POLL_S = 0.5  # how often the sweep looks at its children
STATUS_EVERY_S = 30.0  # progress lines with several jobs
GRACE_S = 5.0  # SIGTERM to SIGKILL when stopping children
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class SweepError(RuntimeError):
    """A run of the sweep failed; the message names it and its log."""


class SweepStopped(KeyboardInterrupt):
    """A signal stopped the sweep, after its children were stopped; rerunning the same command resumes."""

    def __init__(self, signum: int):
        super().__init__("sweep stopped; rerun the same command to resume")
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT


@dataclass
class Sweep:
    """A checked sweep file."""
    out: Path
    recipes: list[Path]
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)
    eval_limit: int = 200
    jobs: int = 1
    baseline: str | None = None
    report: Path | None = None
    keep_checkpoints: bool = False
    keep_weights: bool = True
    split_evaluations: bool = True  # false: one process per test evaluation, even at a sweep's end
    untrained: list[str] = field(default_factory=list)  # glob patterns of untrained-model evaluations, for the report
    contrasts: dict[str, list[str]] = field(default_factory=dict)  # name -> [method, baseline], for the report


# ---------------------------------------------------------------- the sweep file


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_jobs(jobs: object, name: str) -> int:
    """A positive number of runs at once, at most one per core: runs that share cores slow each other down many times over."""
    cores = os.cpu_count() or 1
    if not _is_int(jobs) or jobs < 1:
        raise ValueError(f"{name} must be a positive integer, got {jobs!r}")
    if jobs > cores:
        raise ValueError(f"{name} {jobs} is more than the {cores} cores of this machine; runs sharing cores "
                         "slow each other down many times over")
    return jobs


def recipe_method(recipe: Path) -> str:
    """The method name the report gives a recipe's runs: its `method`, else the one of its reward_funcs."""
    from memoryr.evaluation.report import method_name
    from memoryr.tasks.rewards import DEFAULT_REWARDS

    raw = read_yaml(recipe)
    if not isinstance(raw, dict):
        raise ValueError(f"recipe {recipe} is not a YAML mapping")
    return raw.get("method") or method_name(raw.get("reward_funcs", DEFAULT_REWARDS))


def load_sweep(path: Path) -> Sweep:
    """Read and check a sweep file before anything runs; every problem is one error naming the key."""
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must be a YAML mapping with out, recipes and seeds")
    unknown = set(raw) - set(KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(KEYS)}")
    for key in ("out", "recipes", "seeds"):
        if key not in raw:
            raise ValueError(f"{path}: missing {key!r}")

    def bad(key: str, what: str) -> ValueError:
        return ValueError(f"{path}: {key} must be {what}, got {raw[key]!r}")

    for key in ("out", "baseline", "report"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise bad(key, "a non-empty string")
    recipes = raw["recipes"]
    if not isinstance(recipes, list) or not recipes or not all(isinstance(r, str) for r in recipes):
        raise bad("recipes", "a non-empty list of recipe files, e.g. [recipes/arith-r1-cpu.yaml]")
    names: dict[str, str] = {}
    for recipe in recipes:
        stem = Path(recipe).stem
        if stem in names:  # the run folders would clash
            raise ValueError(f"{path}: recipes lists {names[stem]} and {recipe}, whose runs share the name {stem}-seed<N>; "
                             "list each recipe once, with distinct file names")
        names[stem] = recipe
    missing = [r for r in recipes if not Path(r).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: recipe(s) not found: {', '.join(missing)}")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s) for s in seeds):
        raise bad("seeds", "a non-empty list of integers, e.g. [1, 2, 3]")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"{path}: seeds lists {', '.join(map(str, repeated))} more than once")
    overrides = raw.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, (str, int, float, bool)) for o in overrides):
        raise bad("overrides", 'a list of command-line words, e.g. [--max_steps, "60"]')
    if "eval_limit" in raw and (not _is_int(raw["eval_limit"]) or raw["eval_limit"] < 1):
        raise bad("eval_limit", "a positive integer")
    for key in ("keep_checkpoints", "keep_weights", "split_evaluations"):
        if key in raw and not isinstance(raw[key], bool):
            raise bad(key, "true or false")
    untrained = raw.get("untrained", [])
    if not isinstance(untrained, list) or not all(isinstance(u, str) and u for u in untrained):
        raise bad("untrained", "a list of folders or glob patterns, e.g. [results/study/untrained/seed*]")
    contrasts = raw.get("contrasts", {})
    if not isinstance(contrasts, dict) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(m, str) for m in pair)
            for pair in contrasts.values()):
        raise bad("contrasts", "a mapping of names to [method, baseline], e.g. {content: [Memory-R+, R1]}")
    sweep = Sweep(
        out=Path(raw["out"]),
        recipes=[Path(r) for r in recipes],
        seeds=seeds,
        overrides=[str(o) for o in overrides],
        eval_limit=raw.get("eval_limit", 200),
        jobs=check_jobs(raw.get("jobs", 1), f"{path}: jobs"),
        baseline=raw.get("baseline"),
        report=Path(raw["report"]) if "report" in raw else None,
        keep_checkpoints=raw.get("keep_checkpoints", False),
        keep_weights=raw.get("keep_weights", True),
        split_evaluations=raw.get("split_evaluations", True),
        untrained=untrained,
        contrasts={str(name): pair for name, pair in contrasts.items()},
    )
    methods = list(dict.fromkeys(recipe_method(r) for r in sweep.recipes))
    if sweep.baseline is not None and sweep.baseline not in methods:
        raise ValueError(f"{path}: baseline {sweep.baseline!r} names no method of this sweep (methods: {', '.join(methods)})")
    for name, pair in sweep.contrasts.items():
        unknown = [m for m in pair if m not in methods]
        if unknown:
            raise ValueError(f"{path}: contrast {name!r} names no method of this sweep: {', '.join(unknown)} "
                             f"(methods: {', '.join(methods)})")
    return sweep


def run_dir(sweep: Sweep, recipe: Path, seed: int) -> Path:
    return sweep.out / f"{recipe.stem}-seed{seed}"


def log_phase(sweep: Sweep, run: str | None, phase: str, seconds: float) -> None:
    """Append what a finished phase cost (a run's train, eval-best or eval-last, or the sweep's report) to
    `<out>/logs/phases.jsonl`, one line each: where a sweep's hours go (`memoryr bench study` reads it)."""
    row = {"run": run, "phase": phase, "seconds": round(seconds, 2), "at": datetime.now().isoformat(timespec="seconds")}
    (sweep.out / "logs").mkdir(parents=True, exist_ok=True)
    with open(sweep.out / "logs" / PHASES, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def log_path(sweep: Sweep, folder: Path) -> Path:
    """Where a run's child output goes: outside the run folder, which a restart from scratch removes."""
    return sweep.out / "logs" / f"{folder.name}.log"


def grid(sweep: Sweep) -> list[tuple[Path, int]]:
    """(recipe, seed) pairs in run order: every recipe at the first seed, then the next seed."""
    return [(recipe, seed) for seed in sweep.seeds for recipe in sweep.recipes]


# ---------------------------------------------------------------- child processes


def threads_per_run(jobs: int) -> int:
    """The cores split evenly between the runs going at once."""
    return max(1, (os.cpu_count() or 1) // jobs)


def child_env(jobs: int) -> dict[str, str]:
    """The environment of a run's processes: its share of the cores as thread counts, output unbuffered for the log."""
    return {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(threads_per_run(jobs))), "PYTHONUNBUFFERED": "1"}


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the sweep dies, even by SIGKILL (None elsewhere)."""
    if _LIBC is None:
        return None

    def preexec() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the sweep died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `memoryr ARGS` in a session of its own (so the sweep alone decides when it stops), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n===== {datetime.now():%Y-%m-%d %H:%M:%S} {shlex.join(['memoryr', *args])}\n")
        f.flush()
        return subprocess.Popen([sys.executable, "-m", "memoryr.cli", *args], stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=_die_with_parent(os.getpid()))


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def stop_children(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each child's process group, SIGKILL the ones still there after GRACE_S, and reap them all."""
    live = [p for p in processes if p.poll() is None]
    for process in live:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    for process in live:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


class _StopSignals:
    """While active, SIGINT/SIGTERM/SIGHUP only note the signal, so the sweep's loop can stop its children first."""

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> _StopSignals:
        self.previous = {s: signal.signal(s, self._note) for s in STOP_SIGNALS}
        return self

    def _note(self, signum: int, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def check(self) -> None:
        if self.signum is not None:
            raise SweepStopped(self.signum)


def _memoryr(*args: str) -> None:
    """Run a short memoryr command (the report) in a fresh process, its output on the console."""
    done = subprocess.run([sys.executable, "-m", "memoryr.cli", *args], env=os.environ.copy())
    if done.returncode != 0:
        raise SweepError(f"`memoryr {' '.join(args[:3])} ...` failed with exit status {done.returncode}")


# ---------------------------------------------------------------- a run's phases


def _eval_needed(folder: Path, phase: str) -> bool:
    """The model exists (no best/ when the run had no held-out eval) and its evaluation is not complete."""
    try:
        done = json.loads((folder / phase / "results.json").read_text()).get("status") == "complete"
    except (FileNotFoundError, ValueError):  # not started, or cut off: the evaluation resumes from its samples
        done = False
    return (folder / MODELS[phase]).exists() and not done


def _eval_args(sweep: Sweep, folder: Path, phase: str) -> list[str]:
    """`memoryr eval` of a run's model on its test split, with the run's own prompt and evaluation settings; a
    phase such as `eval-best 1/2` is that evaluation's first shard (`memoryr eval --shard`)."""
    phase, _, shard = phase.partition(" ")
    record = json.loads((folder / "run.json").read_text())
    script, training = record["config"]["script"], record["config"]["training"]
    # the run's own seed, task size and generator options give the same problems as its split in training
    task = script.get("test_task") or script["eval_task"] or script["task"]
    args = ["eval", "--model", str(folder / MODELS[phase]), "--task", task,
            "--split", script.get("test_split", "test"), "--limit", str(sweep.eval_limit),
            "--shots", str(script["shots"]), "--exemplars", script["exemplars"], "--prefill", script["prefill"],
            "--grading", script["grading"], "--system-prompt", script.get("system_prompt", "xml"),
            "--seed", str(record["seed"]), "--task-size", str(script["task_size"]),
            "--max-new-tokens", str(training["max_completion_length"]), "--output", str(folder / phase),
            "--share-prefix", str(script.get("eval_share_prefix", True)).lower()]
    if "eval_batch_size" in script:  # recorded before the setting sized test evaluations: `memoryr eval`'s default
        args += ["--batch-size", str(script["eval_batch_size"])]
    if shard:
        args += ["--shard", shard]
    if "validation_size" in script:
        args += ["--validation-size", str(script["validation_size"])]
    if script["task_config"]:
        args += ["--task-config", script["task_config"]]
    if script["data_dir"]:
        args += ["--data-dir", script["data_dir"]]
    return args


def _same_weights(folder: Path) -> bool:
    """best/ was chosen at the last step, so it holds final/'s weights."""
    try:
        best = json.loads((folder / "evals.json").read_text())["best"]["step"]
        final = json.loads((folder / "final" / MARKER).read_text())["step"]
    except (FileNotFoundError, ValueError, KeyError):
        return False
    return best == final


def _shards(sweep: Sweep, folder: Path, phase: str, split: bool) -> int:
    """How many processes share a test evaluation: as many as it has shards already; else, when `split` (no run
    waits for a core), one per job up to one per batch, so that a core freed meanwhile takes a share; else one."""
    started = sorted((folder / phase).glob("shard-*-of-*"))
    if started:
        return int(started[0].name.rsplit("-", 1)[1])
    if not split or not sweep.split_evaluations or (folder / phase / "samples.jsonl").exists():  # begun whole: so it resumes
        return 1
    script = json.loads((folder / "run.json").read_text())["config"]["script"]
    return min(sweep.jobs, math.ceil(sweep.eval_limit / script.get("eval_batch_size", BATCH_SIZE)))


def _copy_best_eval(folder: Path) -> None:
    """eval-last/ as a copy of eval-best/ (the same weights), saying so in its results.json."""
    tmp = staging(folder / "eval-last")
    shutil.copytree(folder / "eval-best", tmp)
    results = json.loads((tmp / "results.json").read_text())
    results["copied_from"] = "eval-best: best/ was chosen at the last step, the weights of final/"
    (tmp / "results.json").write_text(json.dumps(results, indent=2))
    swap_in(folder / "eval-last")


@dataclass
class Job:
    """A run on its way through its phases (train, eval-best, eval-last), one child process at a time (a run
    evaluating best/ and final/ at once is two jobs)."""
    folder: Path
    log: Path
    phases: list[str]  # still to start
    train_args: list[str]
    from_scratch: bool  # its duration feeds the estimate of time left
    note: str  # what the run does, for the console
    started: float = field(default_factory=time.monotonic)
    phase: str = ""
    phase_started: float = 0.0
    process: subprocess.Popen | None = None
    echoed: int = 0  # bytes of the log already copied to the console (one job)
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))


def prune_checkpoints(folder: Path) -> None:
    """Remove a finished run's `checkpoint-N/` folders (they only serve a resume), saying so.

    Each loses its completion marker first, so one half removed by a crash is never resumed from.
    """
    found = checkpoints(folder)
    for checkpoint in found:  # every one checked before any is touched
        refuse_link(checkpoint)
    for checkpoint in found:
        (checkpoint / MARKER).unlink(missing_ok=True)
        remove_folder(checkpoint)
    if found:
        print(f"  {folder.name}: removed {', '.join(c.name for c in found)} (final/ is complete; "
              "keep_checkpoints: true keeps them)")


def prune_weights(folder: Path) -> None:
    """Remove the weights of a run's best/ and final/ once both are evaluated, leaving a note in their place.

    Everything else stays (config, tokenizer, memories, completion marker), so the run still counts as finished
    and evaluated; `memoryr eval` of such a folder says why it cannot.
    """
    if any(_eval_needed(folder, phase) for phase in MODELS):
        return
    removed = []
    for phase, name in MODELS.items():
        model = folder / name
        refuse_link(model)
        found = sorted(f for pattern in WEIGHT_FILES for f in model.glob(pattern))
        for file in found:
            refuse_link(file)
        if not found:
            continue
        (model / WEIGHTS_REMOVED).write_text(
            f"removed by memoryr sweep (keep_weights: false) after its test evaluation; results in "
            f"{folder.name}/{phase}/; retrain the run to get them back\n")
        for file in found:
            file.unlink()
        removed.append(name)
    if removed:
        print(f"  {folder.name}: removed the weights of {' and '.join(f'{m}/' for m in removed)} "
              "(evaluated; keep_weights: true keeps them)")


def _open_run(sweep: Sweep, recipe: Path, seed: int) -> Job | None:
    """What a run still needs: None when finished and evaluated; else a Job."""
    folder = run_dir(sweep, recipe, seed)
    log = log_path(sweep, folder)
    echoed = log.stat().st_size if log.exists() else 0
    if is_complete(folder / "final"):
        if not sweep.keep_checkpoints:
            prune_checkpoints(folder)
        phases = [p for p in MODELS if _eval_needed(folder, p)]
        if not sweep.keep_weights:
            prune_weights(folder)
        return Job(folder, log, phases, [], False, "finished, evaluating", echoed=echoed) if phases else None
    train = ["train", "--config", str(recipe), *sweep.overrides, "--seed", str(seed), "--output_dir", str(folder)]
    checkpoint, skipped = latest_complete_checkpoint(folder)
    for line in skipped:
        print(f"  {folder.name}: {line}")
    if checkpoint is not None:
        return Job(folder, log, ["train", *MODELS], [*train, "--resume", "true"], False,
                   f"resuming from {checkpoint.name}", echoed=echoed)
    if (folder / "final").exists():  # never staged by this version: older memoryr, or damaged by hand
        raise SweepError(f"{folder / 'final'} has no completion marker (written by an older memoryr, or damaged); "
                         "move the run folder away to train it again")
    if folder.exists():  # stopped before its first complete checkpoint: `--resume` starts it over and records that
        with RunLock(folder):  # only a check: a live process that still writes the folder makes this fail
            pass
        train.extend(["--resume", "true"])
    return Job(folder, log, ["train", *MODELS], train, True, "training", echoed=echoed)


def _start_next(sweep: Sweep, job: Job, split: bool = False) -> bool:
    """Start the job's next phase that has work to do; False when none is left. With `split`, a test evaluation
    becomes shards (`_shards`), which free cores may take (`_eval_beside`)."""
    if job.phase == "train" and not sweep.keep_checkpoints and is_complete(job.folder / "final"):
        prune_checkpoints(job.folder)
    while job.phases:
        job.phase = job.phases.pop(0)
        evaluation = job.phase.split(" ")[0]  # eval-best of `eval-best 1/2`
        if job.phase == "train":
            args = job.train_args
        elif not _eval_needed(job.folder, evaluation):
            continue
        elif evaluation == "eval-last" and _same_weights(job.folder):
            _copy_when_best_is_done(job.folder)  # else eval-best's shards still run: the last of them copies it
            continue
        elif job.phase in MODELS and (shards := _shards(sweep, job.folder, job.phase, split)) > 1:
            job.phases[:0] = [f"{job.phase} {k}/{shards}" for k in range(1, shards + 1)]
            continue
        else:
            args = _eval_args(sweep, job.folder, job.phase)
        job.process = spawn(args, job.log, child_env(sweep.jobs))
        job.phase_started = time.monotonic()
        return True
    return False


def _eval_beside(sweep: Sweep, active: list[Job]) -> Job | None:
    """Evaluation work for a core no run is waiting for (the sweep's last runs), taken from a run that is
    evaluating: a shard still to start, or its final/ evaluation beside its best/ one; None when there is none.
    With the same weights, eval-last/ stays the copy of eval-best/ made once that is done."""
    for job in active:
        if job.phase == "train":
            continue
        for phase in job.phases:
            if " " in phase or (phase == "eval-last" and not _same_weights(job.folder)):
                job.phases.remove(phase)
                evaluation, _, shard = phase.partition(" ")
                note = (f"evaluating shard {shard} of {MODELS[evaluation]}/" if shard else
                        "evaluating final/ beside best/")
                beside = Job(job.folder, job.log, [phase], [], job.from_scratch, note, started=job.started)
                if _start_next(sweep, beside, split=True):
                    return beside
                break
    return None


def _copy_when_best_is_done(folder: Path) -> None:
    """eval-last/ as eval-best/'s copy (best/ holds final/'s weights), once eval-best/ is complete."""
    if _eval_needed(folder, "eval-last") and _same_weights(folder) and not _eval_needed(folder, "eval-best"):
        _copy_best_eval(folder)


def _echo(job: Job) -> None:
    """Copy what the job's children wrote to its log since last time to the console (one job at a time)."""
    with open(job.log, "rb") as f:
        f.seek(job.echoed)
        data = f.read()
    job.echoed += len(data)
    print(job.decoder.decode(data), end="", flush=True)


_FAILURE = re.compile(r"^(error:|[\w.]+(Error|Exception)\b)")  # memoryr's error line, a traceback's last line


def _failure_line(log: Path) -> str:
    """Why a child failed, from its log's tail: the last `error:` or exception line (a progress bar may
    follow a traceback), else the last non-empty line."""
    with open(log, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
        text = f.read().decode(errors="replace")
    lines = [part.strip() for line in text.splitlines() for part in line.split("\r") if part.strip()]
    failures = [line for line in lines if _FAILURE.match(line)]
    return (failures or lines or ["no output"])[-1][:300]


def _last_step(metrics: Path) -> int | None:
    """The step of metrics.jsonl's last complete row, read from its tail (None before the first)."""
    # not read_log: this reads only the tail of a log still being written, and the seek cuts its first line
    if not metrics.exists():
        return None
    with open(metrics, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
        lines = f.read().splitlines()
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _progress(sweep: Sweep, job: Job) -> str:
    """The last training step logged, or the problems an evaluation (or its shard) has finished."""
    if job.phase != "train":
        evaluation, _, shard = job.phase.partition(" ")
        folder = job.folder / evaluation / (f"shard-{shard.replace('/', '-of-')}" if shard else "")
        samples = folder / "samples.jsonl"
        done = samples.read_bytes().count(b"\n") if samples.exists() else 0
        return f"{done} problems, shard {shard}" if shard else f"{done}/{sweep.eval_limit} problems"
    step = _last_step(job.folder / "metrics.jsonl")
    try:
        total = json.loads((job.folder / "run.json").read_text())["config"]["training"]["max_steps"]
    except (FileNotFoundError, ValueError, KeyError):  # not written yet (or being written)
        total = "?"
    return "starting" if step is None else f"step {step}/{total}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def past_durations(sweep: Sweep) -> list[float]:
    """What each finished run of this sweep cost, its phases summed (`phases.jsonl`), if its training was never
    resumed: a sweep run in pieces estimates the time left from its first minute, not from its first finished run."""
    try:
        rows = read_log(sweep.out / "logs" / PHASES, fields=("run", "phase", "seconds"))
    except (OSError, ValueError):  # none yet, or damaged: the estimate waits for this call's runs
        return []
    latest = {(row["run"], row["phase"]): row["seconds"] for row in rows}  # a run redone from scratch: its last
    durations = []
    for recipe, seed in grid(sweep):
        folder = run_dir(sweep, recipe, seed)
        phases = [seconds for (run, _), seconds in latest.items() if run == folder.name]
        if phases and is_complete(folder / "final") and _never_resumed(folder):
            durations.append(sum(phases))
    return durations


def _never_resumed(folder: Path) -> bool:
    try:
        return resumes(json.loads((folder / "run.json").read_text(encoding="utf-8"))) == []
    except (OSError, ValueError):
        return False


def _time_left(durations: list[float], waiting: int, active: list[Job], jobs: int) -> str:
    """The mean time of the runs trained from scratch so far, times the work left, shared by the parallel jobs."""
    if not durations:
        return "unknown"
    mean, now = sum(durations) / len(durations), time.monotonic()
    started = {j.folder: j.started for j in active}  # a run evaluating best/ and final/ at once counts once
    return _duration((mean * waiting + sum(max(mean - (now - s), 0.0) for s in started.values())) / jobs)


# ---------------------------------------------------------------- the sweep


def _run_grid(sweep: Sweep, stop: _StopSignals) -> None:
    """Train and evaluate every run not yet finished, `sweep.jobs` at a time; raises SweepError naming failed runs."""
    runs = grid(sweep)
    waiting = [(i, recipe, seed) for i, (recipe, seed) in enumerate(runs, 1)]
    active: list[Job] = []
    failures: list[str] = []
    durations = past_durations(sweep)  # training + evaluation of each run trained from scratch, in any call
    next_status = time.monotonic() + STATUS_EVERY_S
    print(f"{len(runs)} runs, {sweep.jobs} at a time with {threads_per_run(sweep.jobs)} thread(s) each; "
          f"logs in {sweep.out / 'logs'}/")
    try:
        while active or (waiting and not failures):
            while waiting and not failures and len(active) < sweep.jobs:
                index, recipe, seed = waiting.pop(0)
                name = run_dir(sweep, recipe, seed).name
                try:
                    job = _open_run(sweep, recipe, seed)
                except RunLockedError as e:
                    failures.append(f"{name} ({e})")
                    continue
                # split its evaluations once every run still waiting gets a core now (none will wait)
                if job is None or not _start_next(sweep, job, split=len(waiting) < sweep.jobs - len(active)):
                    print(f"[{index}/{len(runs)}] {name}: finished, skipped")
                    continue
                active.append(job)
                unfinished = sum(not is_complete(run_dir(sweep, r, s) / "final") for _, r, s in waiting)
                print(f"[{index}/{len(runs)}] {name}: {job.note} "
                      f"(time left for this sweep: {_time_left(durations, unfinished, active, sweep.jobs)})")
            while not waiting and not failures and len(active) < sweep.jobs and (beside := _eval_beside(sweep, active)):
                active.append(beside)
                print(f"{beside.folder.name}: {beside.note} (a core is free)")
            time.sleep(POLL_S)
            stop.check()
            for job in list(active):
                if sweep.jobs == 1:
                    _echo(job)
                code = job.process.poll()
                if code is None:
                    continue
                if sweep.jobs == 1:
                    _echo(job)
                if code != 0:
                    active.remove(job)
                    failures.append(f"{job.folder.name} ({job.phase} failed with exit status {code}: "
                                    f"{_failure_line(job.log)}; log: {job.log})")
                    print(f"{job.folder.name}: {job.phase} failed (exit status {code}); log: {job.log}")
                    continue
                log_phase(sweep, job.folder.name, job.phase, time.monotonic() - job.phase_started)
                crash_point(f"sweep-after-{job.phase}")
                if not _start_next(sweep, job, split=not waiting):
                    active.remove(job)
                    if any(other.folder == job.folder for other in active):
                        continue  # another evaluation of the run still runs: the last one to finish closes the run
                    _copy_when_best_is_done(job.folder)
                    if any(_eval_needed(job.folder, phase) for phase in MODELS):
                        continue  # one of its evaluations failed
                    if not sweep.keep_weights:
                        prune_weights(job.folder)
                    elapsed = time.monotonic() - job.started
                    if job.from_scratch:  # a resumed run is shorter and would make the estimate too hopeful
                        durations.append(elapsed)
                    print(f"{job.folder.name}: done in {_duration(elapsed)}")
            if sweep.jobs > 1 and active and time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY_S
                unfinished = sum(not is_complete(run_dir(sweep, r, s) / "final") for _, r, s in waiting)
                print(f"[{datetime.now():%H:%M:%S}] {len(active)} running, {unfinished} waiting, "
                      f"time left for this sweep: {_time_left(durations, unfinished, active, sweep.jobs)}")
                width = max(len(j.folder.name) for j in active)
                for job in active:
                    print(f"  {job.folder.name:<{width}}  {job.phase:<9}  {_progress(sweep, job):<18}  "
                          f"{_duration(time.monotonic() - job.started)} elapsed")
        stop.check()  # a signal during the last poll stops the sweep before its report
    finally:
        if active:
            print(f"stopping {len(active)} running run(s)", file=sys.stderr)
        stop_children([job.process for job in active])
    if failures:
        raise SweepError(f"run(s) failed: {'; '.join(failures)}; {len(waiting)} run(s) not started; "
                         "rerun the same command once the cause is fixed")


def _write_report(sweep: Sweep, folders: list[Path]) -> Path:
    """`memoryr report` over the run folders, with their small artefacts copied beside it."""
    report_dir = sweep.report or sweep.out / "report"
    baseline = ["--baseline", sweep.baseline] if sweep.baseline else []
    untrained = []
    for pattern in sweep.untrained:  # matched now: the untrained model may be evaluated after the sweep started
        found = sorted(glob.glob(pattern))
        if not found:
            print(f"untrained: nothing matches {pattern} yet; the report goes without it", flush=True)
        untrained += found
    untrained = ["--untrained", *untrained] if untrained else []
    contrasts = [word for name, pair in sweep.contrasts.items() for word in ("--contrast", name, *pair)]
    _memoryr("report", *map(str, folders), "--out", str(report_dir), *baseline, *untrained, *contrasts)
    collect(folders, report_dir)
    return report_dir


ARTEFACTS = ("run.json", "metrics.jsonl", "evals.json", "completions.jsonl", "eval-best/results.json",
             "eval-best/samples.jsonl", "eval-last/results.json", "eval-last/samples.jsonl")
# small files worth keeping with the report (samples.jsonl: the per-problem verdicts of the paired test); no weights


def collect(folders: list[Path], report_dir: Path) -> None:
    """Copy each run's small artefacts to `report_dir/runs/<run>/`, so the report travels with its data."""
    for folder in folders:
        for name in ARTEFACTS:
            if (folder / name).exists():
                target = report_dir / "runs" / folder.name / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / name, target)


def report_finished(path: Path) -> Path:
    """Report the runs of a sweep that have finished so far (a sweep stopped part way, or still going); trains nothing."""
    sweep = load_sweep(path)
    folders = [run_dir(sweep, r, s) for r, s in grid(sweep)]
    finished = [f for f in folders if is_complete(f / "final")]
    if not finished:
        raise SweepError(f"no finished run in {sweep.out} yet")
    print(f"{len(finished)} of {len(folders)} runs finished: {', '.join(f.name for f in finished)}")
    return _write_report(sweep, finished)


def run_sweep(path: Path, jobs: int | None = None) -> Path:
    """Train, evaluate and report every run of a sweep, `jobs` (else the file's `jobs`) at a time; returns the report folder."""
    sweep = load_sweep(path)
    if jobs is not None:
        sweep.jobs = check_jobs(jobs, "--jobs")
    with RunLock(sweep.out):  # one sweep per out folder
        with _StopSignals() as stop:
            _run_grid(sweep, stop)
        crash_point("sweep-before-report")
        started = time.monotonic()
        report = _write_report(sweep, [run_dir(sweep, r, s) for r, s in grid(sweep)])
        log_phase(sweep, None, "report", time.monotonic() - started)
        return report
