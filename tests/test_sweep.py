"""The sweep: sweep-file checks, parallel runs with split cores, resume after crashes and signals, a report.

The slow tests share one reference sweep (two tiny runs at once); the crash test drives another
sweep through every kill point and signal and must end with the reference's artefacts.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import yaml
from filelock import FileLock

from memoryr import models
from memoryr.checkpoints import CRASH_ENV, CRASH_EXIT_CODE, MARKER, RunLock, RunLockedError, is_complete, mark_complete
from memoryr.cli import main
from memoryr.evaluation import sweep as sweep_module
from memoryr.evaluation.evaluate import read_samples
from memoryr.evaluation.sweep import (Job, SweepError, _failure_line, _open_run, _progress, _start_next, _time_left,
                                      _write_report, child_env, load_sweep, past_durations, report_finished,
                                      run_sweep)

REPO = Path(__file__).resolve().parents[1]
R1 = REPO / "recipes" / "gsm8k-r1-cpu.yaml"
MEMORYR_PLUS = REPO / "recipes" / "gsm8k-memoryrplus-cpu.yaml"
TINY = ["--model_name_or_path", "tiny-random", "--max_completion_length", "16", "--gradient_checkpointing", "false",
        "--max_steps", "2", "--save_steps", "2", "--eval_steps", "1", "--eval_limit", "4", "--eval_batch_size", "4",
        "--disable_tqdm", "true"]
RUN1, RUN2 = "gsm8k-r1-cpu-seed1", "gsm8k-r1-cpu-seed2"


def write_sweep(folder: Path, **changes) -> Path:
    spec = {"out": str(folder / "runs"), "recipes": [str(R1)], "seeds": [1, 2], "overrides": TINY, "eval_limit": 3,
            "report": str(folder / "report")}
    spec.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_recipe(path: Path, **changes) -> Path:
    """The R1 recipe with some keys changed."""
    path.write_text(yaml.safe_dump({**yaml.safe_load(R1.read_text()), **changes}))
    return path


def start_sweep(path: Path, *flags: str, crash_at: str | None = None) -> subprocess.Popen:
    """`memoryr sweep` in a process of its own, optionally with a kill point set."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.Popen([sys.executable, "-m", "memoryr.cli", "sweep", str(path), *flags], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def processes_of(run: Path) -> list[int]:
    """Live processes working on a run folder (a sweep's children), found by their command line."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:  # gone meanwhile
            continue
        if str(run).encode() in words:
            pids.append(int(proc.name))
    return pids


def wait_for(condition, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def artefacts(run: Path) -> dict:
    """What a finished run produced, without timings and paths: metrics rows, weights, test results."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    untimed = [{k: v for k, v in row.items() if not any(t in k for t in ("time", "runtime", "per_second", "seconds"))}
               for row in rows]
    results = {name: json.loads((run / name / "results.json").read_text()) for name in ("eval-best", "eval-last")}
    return {"metrics": untimed, "final": (run / "final" / "model.safetensors").read_bytes(),
            "best": (run / "best" / "model.safetensors").read_bytes(),
            "evals": {name: (r["status"], r["split"], r["metrics"]) for name, r in results.items()}}


# ---------------------------------------------------------------- checks before anything runs


@pytest.mark.parametrize("changes, message", [
    ({"seed": [1]}, r"unknown key\(s\) seed"),
    ({"seeds": 1}, "seeds must be a non-empty list of integers, e.g. \\[1, 2, 3\\], got 1"),
    ({"seeds": []}, "seeds must be a non-empty list of integers"),
    ({"seeds": [1, "2"]}, "seeds must be a non-empty list of integers"),
    ({"seeds": [1, True]}, "seeds must be a non-empty list of integers"),
    ({"seeds": [1, 2, 1]}, "seeds lists 1 more than once"),
    ({"recipes": str(R1)}, "recipes must be a non-empty list of recipe files.*got '"),
    ({"recipes": []}, "recipes must be a non-empty list"),
    ({"recipes": [str(R1), str(R1)]}, "recipes lists .* whose runs share the name gsm8k-r1-cpu-seed<N>"),
    ({"overrides": "--max_steps 2"}, "overrides must be a list of command-line words"),
    ({"overrides": ["--max_steps", ["2"]]}, "overrides must be a list of command-line words"),
    ({"eval_limit": 0}, "eval_limit must be a positive integer, got 0"),
    ({"eval_limit": "200"}, "eval_limit must be a positive integer, got '200'"),
    ({"jobs": 0}, "jobs must be a positive integer, got 0"),
    ({"jobs": 1.5}, "jobs must be a positive integer, got 1.5"),
    ({"jobs": (os.cpu_count() or 1) + 1}, f"jobs {(os.cpu_count() or 1) + 1} is more than the {os.cpu_count()} cores"),
    ({"baseline": ["R1"]}, "baseline must be a non-empty string"),
    ({"report": 3}, "report must be a non-empty string, got 3"),
    ({"out": None}, "out must be a non-empty string, got None"),
    ({"keep_checkpoints": "yes"}, "keep_checkpoints must be true or false, got 'yes'"),
    ({"keep_weights": 0}, "keep_weights must be true or false, got 0"),
    ({"split_evaluations": "no"}, "split_evaluations must be true or false, got 'no'"),
    ({"untrained": "base/seed*"}, "untrained must be a list of folders or glob patterns.*got 'base/seed\\*'"),
    ({"untrained": [""]}, "untrained must be a list of folders or glob patterns"),
    ({"baseline": "Nope", "recipes": [str(R1), str(MEMORYR_PLUS)]},
     r"baseline 'Nope' names no method of this sweep \(methods: R1, Memory-R\+\)"),
    ({"contrasts": [["Memory-R+", "R1"]]}, r"contrasts must be a mapping of names to \[method, baseline\]"),
    ({"contrasts": {"memory": ["Memory-R+"]}}, r"contrasts must be a mapping of names to \[method, baseline\]"),
    ({"contrasts": {"memory": ["Memory-R", "R1"]}, "recipes": [str(R1), str(MEMORYR_PLUS)]},
     r"contrast 'memory' names no method of this sweep: Memory-R \(methods: R1, Memory-R\+\)"),
])
def test_bad_sweep_files_are_one_error_naming_the_key(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        load_sweep(write_sweep(tmp_path, **changes))


def test_sweep_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sweep(tmp_path / "none.yaml")
    with pytest.raises(FileNotFoundError, match="recipe\\(s\\) not found: nope.yaml"):
        load_sweep(write_sweep(tmp_path, recipes=["nope.yaml"]))
    with pytest.raises(ValueError, match="missing 'seeds'"):
        path = write_sweep(tmp_path)
        path.write_text(yaml.safe_dump({k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "seeds"}))
        load_sweep(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("out: runs/x\nuntrained: [results/untrained/seed[1-4]]\n")  # a bracket in a flow list
    with pytest.raises(ValueError, match=r"broken.yaml is not valid YAML \(line 2, column 35\): expected ',' or ']'"):
        load_sweep(broken)


def test_baseline_is_a_method_of_the_recipes(tmp_path):
    custom = write_recipe(tmp_path / "custom.yaml", method="R1 (long prompt)")
    assert load_sweep(write_sweep(tmp_path, recipes=[str(R1), str(MEMORYR_PLUS)], baseline="Memory-R+")).baseline == "Memory-R+"
    assert load_sweep(write_sweep(tmp_path, recipes=[str(custom)], baseline="R1 (long prompt)")).jobs == 1
    with pytest.raises(ValueError, match=r"methods: R1 \(long prompt\)\)"):
        load_sweep(write_sweep(tmp_path, recipes=[str(custom)], baseline="R1"))


def test_more_jobs_than_cores_is_one_line_before_anything_is_written(tmp_path, capsys):
    path = write_sweep(tmp_path)
    too_many = (os.cpu_count() or 1) + 1
    with pytest.raises(ValueError, match=f"--jobs {too_many} is more than the {os.cpu_count()} cores"):
        run_sweep(path, jobs=too_many)
    assert main(["sweep", str(path), "--jobs", str(too_many)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_children_share_the_cores_without_oversubscribing(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    env = child_env(2)
    assert [env[v] for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")] == ["4", "4", "4"]
    assert child_env(3)["OMP_NUM_THREADS"] == "2" and child_env(8)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert child_env(2)["OMP_NUM_THREADS"] == "1" and child_env(1)["OMP_NUM_THREADS"] == "2"


def test_a_second_sweep_on_the_same_folder_fails_naming_the_holder(tmp_path):
    path = write_sweep(tmp_path)
    with RunLock(tmp_path / "runs"):
        with pytest.raises(RunLockedError, match=f"in use by another memoryr process \\(pid {os.getpid()}\\)"):
            run_sweep(path)
    assert not (tmp_path / "runs" / "logs").exists()


def test_a_run_another_process_writes_is_not_removed(tmp_path):
    run = tmp_path / "runs" / RUN1
    (run / "checkpoint-2").mkdir(parents=True)  # no completion marker: would be started again
    with RunLock(run):
        with pytest.raises(SweepError, match=f"{RUN1} .*in use by another memoryr process .*1 run\\(s\\) not started"):
            run_sweep(write_sweep(tmp_path))
    assert (run / "checkpoint-2").is_dir()


def test_progress_shows_the_last_step_or_the_problems_evaluated(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    run = tmp_path / "runs" / RUN1
    job = Job(run, tmp_path / "x.log", [], [], True, "training", phase="train")
    assert _progress(sweep, job) == "starting"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"training": {"max_steps": 60}}}))
    (run / "metrics.jsonl").write_text('{"loss": 0.1, "step": 11}\n{"step": 12, "eval/accuracy": 0.5}\n{"lo')
    assert _progress(sweep, job) == "step 12/60"
    job.phase = "eval-best"
    (run / "eval-best").mkdir()
    (run / "eval-best" / "samples.jsonl").write_text('{"index": 0}\n{"index": 1}\n')
    assert _progress(sweep, job) == "2/3 problems"


def test_a_failure_is_told_by_its_error_line_not_the_progress_bar_after_it(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("memoryr train --config r.yaml\n 40%|####      | 32/80 [07:00<10:30]\r 50%|#####     | 40/80\n"
                   "Traceback (most recent call last):\n  File \"train.py\", line 1, in save\n"
                   "safetensors._safetensors_rust.SafetensorError: Error while serializing: I/O error: No space left "
                   "on device (os error 28)\n 50%|#####     | 40/80 [09:03<09:03, 13.59s/it]\n")
    assert _failure_line(log) == ("safetensors._safetensors_rust.SafetensorError: Error while serializing: I/O error: "
                                  "No space left on device (os error 28)")
    log.write_text("step 1\nerror: --max_steps must be a positive integer, got -5\n")
    assert _failure_line(log) == "error: --max_steps must be a positive integer, got -5"
    log.write_text("step 1\n\n killed by the kernel \n")
    assert _failure_line(log) == "killed by the kernel"  # no error line: the last one
    log.write_text("")
    assert _failure_line(log) == "no output"


def test_time_left_shares_the_remaining_work_between_the_jobs(tmp_path):
    halfway = Job(tmp_path, tmp_path / "x.log", [], [], True, "training", started=time.monotonic() - 300)
    assert _time_left([], 3, [halfway], 2) == "unknown"  # nothing trained from scratch yet
    assert _time_left([600.0], 2, [halfway], 2) == "12 min"  # (2 x 600 s + 300 s left of the running one) / 2 jobs
    assert _time_left([3600.0, 7200.0], 2, [], 1) == "3.0 h"


def test_a_sweep_resumed_in_pieces_estimates_from_the_runs_earlier_calls_finished(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, seeds=[1, 2, 3]))
    assert past_durations(sweep) == []  # no phases.jsonl yet
    runs, seed3 = tmp_path / "runs", "gsm8k-r1-cpu-seed3"
    rows = [(RUN1, "train", 900.0), (RUN1, "eval-best", 200.0), (RUN1, "eval-last", 100.0),
            (RUN2, "train", 50.0), (RUN2, "train", 800.0), (RUN2, "eval-best", 300.0),  # redone from scratch
            (seed3, "train", 400.0), (None, "report", 30.0)]
    (runs / "logs").mkdir(parents=True)
    (runs / "logs" / "phases.jsonl").write_text(
        "".join(json.dumps({"run": r, "phase": p, "seconds": s, "at": "2026-12-06T10:00:00"}) + "\n" for r, p, s in rows))
    for run, resumed in ((RUN1, []), (RUN2, []), (seed3, [{"from": "checkpoint-40"}])):
        (runs / run / "final").mkdir(parents=True)
        mark_complete(runs / run / "final", 80)
        (runs / run / "run.json").write_text(json.dumps({"resumes": resumed}))
    # seed 3's training was resumed, so its phases.jsonl time is the rest of it: left out
    assert past_durations(sweep) == [1200.0, 1100.0]
    (runs / RUN2 / "final" / MARKER).unlink()  # not finished: its phases so far are not a run's cost
    assert past_durations(sweep) == [1200.0]
    (runs / "logs" / "phases.jsonl").write_text("not json\n{}\n")  # damaged: the estimate waits, the sweep goes on
    assert past_durations(sweep) == []


def test_report_only_before_any_run_finished_is_a_clear_error(tmp_path):
    with pytest.raises(SweepError, match="no finished run"):
        report_finished(write_sweep(tmp_path))


def test_the_report_gets_the_untrained_evaluations_found_when_it_is_written(tmp_path, monkeypatch, capsys):
    base, none = tmp_path / "base", tmp_path / "none"
    path = write_sweep(tmp_path, untrained=[str(base / "seed*"), str(none / "*")])
    sweep = load_sweep(path)
    for seed in (2, 1):  # evaluated after the sweep file was read
        (base / f"seed{seed}").mkdir(parents=True)
    calls = []
    monkeypatch.setattr(sweep_module, "_memoryr", lambda *args: calls.append(args))
    _write_report(sweep, [tmp_path / "runs" / RUN1])
    assert calls == [("report", str(tmp_path / "runs" / RUN1), "--out", str(tmp_path / "report"),
                      "--untrained", str(base / "seed1"), str(base / "seed2"))]
    assert f"untrained: nothing matches {none / '*'} yet; the report goes without it" in capsys.readouterr().out


def finished_run(folder: Path, best_step: int) -> Path:
    """A trained run (final/ at step 2) whose best/ was chosen at `best_step` and whose eval-best/ is done."""
    (folder / "final").mkdir(parents=True)
    (folder / "final" / MARKER).write_text(json.dumps({"step": 2}))
    (folder / "evals.json").write_text(json.dumps({"best": {"step": best_step}, "last": {"step": 2}}))
    (folder / "eval-best").mkdir()
    (folder / "eval-best" / "results.json").write_text(json.dumps({"status": "complete", "pass@1": 0.25}))
    (folder / "eval-best" / "samples.jsonl").write_text('{"index": 0, "correct": [true]}\n')
    return folder


def test_best_chosen_at_the_last_step_is_not_evaluated_twice(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    run = finished_run(tmp_path / "run", best_step=2)
    job = Job(run, tmp_path / "run.log", ["eval-last"], [], False, "finished, evaluating")
    assert not _start_next(sweep, job) and job.process is None  # nothing to run: best/ holds final/'s weights
    results = json.loads((run / "eval-last" / "results.json").read_text())
    assert results["pass@1"] == 0.25 and results["copied_from"].startswith("eval-best")
    assert (run / "eval-last" / "samples.jsonl").read_bytes() == (run / "eval-best" / "samples.jsonl").read_bytes()


def with_checkpoints(run: Path) -> Path:
    for step in (1, 2):
        (run / f"checkpoint-{step}").mkdir()
        (run / f"checkpoint-{step}" / MARKER).write_text(json.dumps({"step": step}))
    return run


def test_a_trained_runs_checkpoints_are_removed_unless_kept(tmp_path, capsys):
    sweep = load_sweep(write_sweep(tmp_path))
    # just trained: the next phase starts without the resume points; best/ and final/ stay
    trained = with_checkpoints(finished_run(tmp_path / "trained", best_step=2))
    job = Job(trained, tmp_path / "trained.log", ["eval-last"], [], False, "training", phase="train")
    _start_next(sweep, job)
    assert not list(trained.glob("checkpoint-*")) and is_complete(trained / "final")
    assert "trained: removed checkpoint-2, checkpoint-1 (final/ is complete" in capsys.readouterr().out
    # finished by an earlier sweep: removed when the sweep comes to it
    earlier = with_checkpoints(finished_run(tmp_path / "runs" / RUN1, best_step=2))
    assert _open_run(sweep, R1, 1) is not None and not list(earlier.glob("checkpoint-*"))
    # no complete final/ (a failed training): they are what a rerun resumes from
    failed = with_checkpoints(finished_run(tmp_path / "failed", best_step=2))
    (failed / "final" / MARKER).unlink()
    _start_next(sweep, Job(failed, tmp_path / "failed.log", [], [], False, "training", phase="train"))
    assert len(list(failed.glob("checkpoint-*"))) == 2
    # keep_checkpoints: true
    kept = with_checkpoints(finished_run(tmp_path / "kept", best_step=2))
    keeping = load_sweep(write_sweep(tmp_path / "keeping", keep_checkpoints=True))
    _start_next(keeping, Job(kept, tmp_path / "kept.log", ["eval-last"], [], False, "training", phase="train"))
    assert len(list(kept.glob("checkpoint-*"))) == 2


def with_weights(run: Path) -> Path:
    for model in ("best", "final"):
        (run / model).mkdir(exist_ok=True)
        (run / model / "model.safetensors").write_bytes(b"weights")
        (run / model / "config.json").write_text("{}")
    return run


def test_evaluated_runs_lose_their_weights_only_with_keep_weights_false(tmp_path, capsys):
    run = with_weights(finished_run(tmp_path / "runs" / RUN1, best_step=1))
    # eval-last not done yet: nothing is removed
    sweep_module.prune_weights(run)
    assert (run / "best" / "model.safetensors").exists() and (run / "final" / "model.safetensors").exists()
    shutil.copytree(run / "eval-best", run / "eval-last")
    # finished and evaluated by an earlier sweep: keep_weights (default true) leaves them
    assert _open_run(load_sweep(write_sweep(tmp_path)), R1, 1) is None
    assert (run / "best" / "model.safetensors").exists()
    # keep_weights: false removes them when the sweep comes to the run, leaving the rest and a note
    assert _open_run(load_sweep(write_sweep(tmp_path, keep_weights=False)), R1, 1) is None
    assert {p.name for p in (run / "best").iterdir()} == {"config.json", models.WEIGHTS_REMOVED}
    assert {p.name for p in (run / "final").iterdir()} == {MARKER, "config.json", models.WEIGHTS_REMOVED}
    assert f"{RUN1}: removed the weights of best/ and final/ (evaluated; keep_weights: true keeps them)" \
        in capsys.readouterr().out
    assert is_complete(run / "final") and not sweep_module._eval_needed(run, "eval-last")  # still finished, evaluated
    # evaluating such a folder is one error saying why
    assert main(["eval", "--model", str(run / "final"), "--task", "gsm8k", "--limit", "1",
                 "--output", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: model folder {str(run / 'final')!r} has no weights: removed by memoryr sweep "
                            "(keep_weights: false) after its test evaluation")
    assert not (tmp_path / "eval").exists()


def test_a_symlinked_checkpoint_is_refused_and_what_it_points_to_is_left_alone(tmp_path, capsys):
    path = write_sweep(tmp_path, seeds=[1])
    run = with_checkpoints(finished_run(tmp_path / "runs" / RUN1, best_step=2))
    elsewhere = tmp_path / "elsewhere" / "checkpoint-3"
    elsewhere.mkdir(parents=True)
    (elsewhere / MARKER).write_text(json.dumps({"step": 3}))
    (run / "checkpoint-3").symlink_to(elsewhere)
    assert main(["sweep", str(path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {run / 'checkpoint-3'} is a symbolic link: memoryr never deletes or writes through "
                      "a link inside a run folder; put the folder itself there, or remove the link"]
    assert is_complete(elsewhere) and sorted(p.name for p in run.glob("checkpoint-*")) == \
        ["checkpoint-1", "checkpoint-2", "checkpoint-3"]  # refused before any was removed


RUN_RECORD = {"seed": 1, "config": {
    "script": {"eval_task": None, "task": "gsm8k", "shots": 1, "exemplars": "gsm8k", "prefill": "", "grading": "strict",
               "task_size": 0, "task_config": None, "data_dir": None},
    "training": {"max_completion_length": 16}}}


def test_best_chosen_earlier_is_evaluated_on_its_own(tmp_path, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path))
    run = finished_run(tmp_path / "run", best_step=1)
    (run / "run.json").write_text(json.dumps(RUN_RECORD))
    started = []
    monkeypatch.setattr("memoryr.evaluation.sweep.spawn", lambda args, log, env: started.append(args) or "child")
    job = Job(run, tmp_path / "run.log", ["eval-last"], [], False, "finished, evaluating")
    assert _start_next(sweep, job) and job.process == "child"
    assert started[0][:3] == ["eval", "--model", str(run / "final")] and not (run / "eval-last").exists()


class FakeEval:
    """An evaluation child that is still running when first polled and complete when polled again; a shard
    (`--shard K/N`) completes its folder, and the last of the N to finish the evaluation's, as `memoryr eval` does."""

    def __init__(self, args: list[str], events: list[tuple[str, str]], fails: str = ""):
        self.output, self.polls, self.events = Path(args[args.index("--output") + 1]), 0, events
        self.shard = args[args.index("--shard") + 1] if "--shard" in args else ""
        self.name = f"{self.output.name} {self.shard}".strip()
        self.code = int(self.name == fails)
        events.append(("start", self.name))

    def poll(self) -> int | None:
        self.polls += 1
        if self.polls == 2 and not self.code:
            done = {"status": "complete"}
            self.output.mkdir(exist_ok=True)
            if self.shard:
                k, n = self.shard.split("/")
                (self.output / f"shard-{k}-of-{n}").mkdir()
                (self.output / f"shard-{k}-of-{n}" / "results.json").write_text(json.dumps(done))
            if len(list(self.output.glob("shard-*/results.json"))) == int(self.shard.partition("/")[2] or 0):
                (self.output / "results.json").write_text(json.dumps(done))
            self.events.append(("end", self.name))
        return None if self.polls < 2 else self.code


def awaiting_evaluations(tmp_path: Path, monkeypatch, best_step: int, eval_batch_size: int = 32) -> tuple:
    """A 2-job sweep of one trained run (best/ chosen at `best_step`, final/ at 2) whose evaluations of 3 problems
    are to do (in shards when `eval_batch_size` makes more than one batch)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(sweep_module, "POLL_S", 0.0)
    sweep = load_sweep(write_sweep(tmp_path, seeds=[1], jobs=2))
    run = finished_run(sweep.out / RUN1, best_step)
    shutil.rmtree(run / "eval-best")
    (run / "best").mkdir()
    record = json.loads(json.dumps(RUN_RECORD))
    record["config"]["script"]["eval_batch_size"] = eval_batch_size
    (run / "run.json").write_text(json.dumps(record))
    return sweep, run


@pytest.mark.parametrize("best_step, expected", [
    (1, [("start", "eval-best"), ("start", "eval-last"), ("end", "eval-best"), ("end", "eval-last")]),
    (2, [("start", "eval-best"), ("end", "eval-best")]),  # the same weights: eval-last/ is eval-best/'s copy
])
def test_a_free_core_evaluates_final_beside_best_and_the_last_to_finish_closes_the_run(
        tmp_path, monkeypatch, capsys, best_step, expected):
    sweep, run = awaiting_evaluations(tmp_path, monkeypatch, best_step)
    out = run_fake_grid(sweep, monkeypatch, capsys, expected)
    assert (f"{RUN1}: evaluating final/ beside best/ (a core is free)" in out) == (best_step == 1)
    assert json.loads((run / "eval-last" / "results.json").read_text())["status"] == "complete"


def run_fake_grid(sweep, monkeypatch, capsys, expected: list[tuple[str, str]]) -> str:
    """The sweep's loop with FakeEval children: they start and end as `expected`, phases.jsonl logs each end, and
    the run is done once, by the last to finish; the console output."""
    events = []
    monkeypatch.setattr(sweep_module, "spawn", lambda args, log, env: FakeEval(args, events))
    with sweep_module._StopSignals() as stop:
        sweep_module._run_grid(sweep, stop)
    assert events == expected
    out = capsys.readouterr().out
    assert out.count(f"{RUN1}: done in") == 1 and out.rstrip().endswith(f"{RUN1}: done in 0 s")
    phases = [json.loads(line)["phase"] for line in (sweep.out / "logs" / "phases.jsonl").read_text().splitlines()]
    assert phases == [event for kind, event in expected if kind == "end"]
    return out


BEST_1, BEST_2, LAST_1, LAST_2 = "eval-best 1/2", "eval-best 2/2", "eval-last 1/2", "eval-last 2/2"


@pytest.mark.parametrize("best_step, expected", [
    # the first shard's core goes on to final/'s first shard, the second's takes final/'s second
    (1, [("start", BEST_1), ("start", BEST_2), ("end", BEST_1), ("start", LAST_1), ("end", BEST_2), ("start", LAST_2),
         ("end", LAST_1), ("end", LAST_2)]),
    # the same weights: once the last shard of best/ finishes, eval-last/ is eval-best/'s copy
    (2, [("start", BEST_1), ("start", BEST_2), ("end", BEST_1), ("end", BEST_2)]),
])
def test_with_no_run_waiting_each_evaluation_is_shared_by_the_free_cores(tmp_path, monkeypatch, capsys, best_step,
                                                                        expected):
    sweep, run = awaiting_evaluations(tmp_path, monkeypatch, best_step, eval_batch_size=2)  # 2 batches: 2 shards
    out = run_fake_grid(sweep, monkeypatch, capsys, expected)
    assert f"{RUN1}: evaluating shard 2/2 of best/ (a core is free)" in out
    for name in ("eval-best", "eval-last"):
        assert json.loads((run / name / "results.json").read_text())["status"] == "complete"
    assert ("copied_from" in json.loads((run / "eval-last" / "results.json").read_text())) == (best_step == 2)


def test_runs_that_open_straight_into_evaluation_at_the_end_split_theirs(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(sweep_module, "POLL_S", 0.0)
    sweep = load_sweep(write_sweep(tmp_path, jobs=2))  # seeds 1 and 2: both trained, neither evaluated
    for name in (RUN1, RUN2):
        run = finished_run(sweep.out / name, best_step=2)
        shutil.rmtree(run / "eval-best")
        (run / "best").mkdir()
        (run / "run.json").write_text(json.dumps({**RUN_RECORD, "config": {**RUN_RECORD["config"], "script": {
            **RUN_RECORD["config"]["script"], "eval_batch_size": 2}}}))
    monkeypatch.setattr(sweep_module, "spawn", lambda args, log, env: FakeEval(args, []))
    with sweep_module._StopSignals() as stop:
        sweep_module._run_grid(sweep, stop)
    rows = [json.loads(line) for line in (sweep.out / "logs" / "phases.jsonl").read_text().splitlines()]
    # the first run opened while the second still waited to be started beside it: in shards all the same
    assert sorted((row["run"], row["phase"]) for row in rows) == [(RUN1, BEST_1), (RUN1, BEST_2), (RUN2, BEST_1),
                                                                  (RUN2, BEST_2)]


def test_an_evaluation_begun_whole_or_in_shards_resumes_as_it_began(tmp_path, monkeypatch):
    sweep, run = awaiting_evaluations(tmp_path, monkeypatch, best_step=1, eval_batch_size=2)
    assert sweep_module._shards(sweep, run, "eval-best", split=True) == 2
    assert sweep_module._shards(sweep, run, "eval-best", split=False) == 1  # a run waits for a core: one process
    (run / "eval-best" / "shard-2-of-3").mkdir(parents=True)
    assert sweep_module._shards(sweep, run, "eval-best", split=False) == 3
    (run / "eval-last").mkdir()
    (run / "eval-last" / "samples.jsonl").write_text("")
    assert sweep_module._shards(sweep, run, "eval-last", split=True) == 1
    assert sweep_module._eval_args(sweep, run, "eval-best 2/3")[-2:] == ["--shard", "2/3"]
    sweep.split_evaluations = False  # the sweep file's split_evaluations: false
    assert sweep_module._shards(sweep, run, "eval-best", split=True) == 3  # begun in shards: it resumes so
    assert sweep_module._shards(sweep, run, "eval-last", split=True) == 1
    shutil.rmtree(run / "eval-last")
    assert sweep_module._shards(sweep, run, "eval-last", split=True) == 1


def test_a_run_whose_best_evaluation_failed_beside_its_final_one_is_not_done(tmp_path, monkeypatch, capsys):
    sweep, run = awaiting_evaluations(tmp_path, monkeypatch, best_step=1)
    (sweep.out / "logs").mkdir()
    (sweep.out / "logs" / f"{RUN1}.log").write_text("error: no space left on device\n")
    events = []
    monkeypatch.setattr(sweep_module, "spawn", lambda args, log, env: FakeEval(args, events, fails="eval-best"))
    with sweep_module._StopSignals() as stop, pytest.raises(SweepError, match=f"{RUN1} \\(eval-best failed .*no space"):
        sweep_module._run_grid(sweep, stop)
    assert events == [("start", "eval-best"), ("start", "eval-last"), ("end", "eval-last")]
    assert "done in" not in capsys.readouterr().out and not (run / "eval-best").exists()


# ---------------------------------------------------------------- real tiny sweeps


WAITING = "[memoryr] waiting for another process to prepare tiny-random"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """Two tiny runs at once (`--jobs 2`, one thread each) from an empty model cache, evaluated and reported:
    (folder, console output). Both runs begin by preparing tiny-random; the lock held here until both wait for
    it makes them certainly meet there. Their checkpoints are kept, for the resume test."""
    folder = tmp_path_factory.mktemp("reference")
    logs = [folder / "runs" / "logs" / f"{run}.log" for run in (RUN1, RUN2)]
    with mock.patch.dict(os.environ, {"MEMORYR_CACHE": str(folder / "cache")}):
        models.cache_dir().mkdir(parents=True)
        with FileLock(models.lock_path("tiny-random")):
            sweep = start_sweep(write_sweep(folder, baseline="R1", keep_checkpoints=True), "--jobs", "2")
            wait_for(lambda: sweep.poll() is not None or all(log.exists() and WAITING in log.read_text() for log in logs),
                     "both runs to wait for tiny-random")
        code, out, err = finish(sweep)
    assert code == 0, err
    return folder, out


@pytest.mark.slow
def test_two_runs_at_once_finish_with_their_logs_and_report(reference):
    folder, out = reference
    runs, report = folder / "runs", folder / "report"
    assert "2 runs, 2 at a time with 1 thread(s) each" in out
    # both runs started before the first one finished
    assert out.index(f"[2/2] {RUN2}: training") < out.index(f"{RUN1}: done")
    for seed, name in ((1, RUN1), (2, RUN2)):
        run = runs / name
        assert is_complete(run / "final") and json.loads((run / "run.json").read_text())["seed"] == seed
        assert is_complete(run / "checkpoint-2")  # keep_checkpoints: true
        for phase in ("eval-best", "eval-last"):
            results = json.loads((run / phase / "results.json").read_text())
            # on the run's test split, with its own seed and completion length
            assert results["status"] == "complete" and results["split"] == "test"
            assert results["settings"]["seed"] == seed and results["settings"]["max_new_tokens"] == 16
            assert results["settings"]["system_prompt"] == "xml"  # the run's own prompt
        log = (runs / "logs" / f"{name}.log").read_text()
        # the tiny model scores 0 at steps 1 and 2, so best/ is step 1's and both models are evaluated
        assert log.count("memoryr train --config") == 1 and log.count("memoryr eval --model") == 2
        assert "gsm8k validation accuracy" in log  # the child's own output
        assert log.count(WAITING) == 1  # for tiny-random, from the empty cache: it waited once, then used it
    assert (report / "report.md").exists()
    phases = [json.loads(line) for line in (runs / "logs" / "phases.jsonl").read_text().splitlines()]
    assert sorted((p["run"] or "", p["phase"]) for p in phases) == [
        ("", "report"), *((name, phase) for name in (RUN1, RUN2) for phase in ("eval-best", "eval-last", "train"))]
    assert all(p["seconds"] > 0 for p in phases)
    copied = report / "runs" / RUN1
    for name in ("metrics.jsonl", "evals.json", "run.json", "eval-best/results.json", "eval-last/results.json"):
        assert (copied / name).read_bytes() == (runs / RUN1 / name).read_bytes(), name
    assert not list(report.rglob("*.safetensors"))


@pytest.mark.slow
def test_resumes_restarts_and_reports_what_finished(reference, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one thread for the children of this one-job sweep
    runs = tmp_path / "runs"
    shutil.copytree(reference[0] / "runs", runs)
    path = write_sweep(tmp_path, keep_weights=False)
    # an interrupted run (complete checkpoint, no final/) is resumed, a finished one skipped
    shutil.rmtree(runs / RUN1 / "final")
    run_sweep(path)
    out = capsys.readouterr().out
    # the estimate comes from the run the reference sweep finished (its phases.jsonl), not "unknown"
    assert re.search(rf"\[1/2\] {RUN1}: resuming from checkpoint-2 \(time left for this sweep: \d+ (s|min)\)", out)
    assert f"[2/2] {RUN2}: finished, skipped" in out
    # keep_weights: false: both runs' weights went once evaluated, the resumed one's after its training
    assert out.index(f"{RUN1}: removed the weights of best/ and final/") > out.index("[memoryr] resuming")
    assert f"{RUN2}: removed the weights of best/ and final/" in out
    assert not list(runs.rglob("*/best/*.safetensors")) and not list(runs.rglob("*/final/*.safetensors"))
    assert "memoryr train --config" in out and "[memoryr] resuming" in out  # one job: the child output on the console too
    assert is_complete(runs / RUN1 / "final")
    log = (runs / "logs" / f"{RUN1}.log").read_text()
    assert log.count("memoryr train --config") == 2 and "--resume true" in log  # appended to the first attempt's
    # a partial sweep reports only what has finished
    shutil.rmtree(runs / RUN2 / "final")
    report = tmp_path / "report"
    shutil.rmtree(report)
    report_finished(path)
    assert f"1 of 2 runs finished: {RUN1}" in capsys.readouterr().out
    assert [p.name for p in (report / "runs").iterdir()] == [RUN1]
    assert [r["seed"] for r in json.loads((report / "report.json").read_text())["runs"]] == [1]


@pytest.mark.slow
def test_crashes_and_signals_at_every_point_resume_to_the_same_results(reference, tmp_path):
    path = write_sweep(tmp_path, seeds=[1])
    run = tmp_path / "runs" / RUN1
    # Ctrl-C while a run trains: its child is stopped too, and the sweep says how to go on
    sweep = start_sweep(path, "--jobs", "2")
    wait_for(lambda: processes_of(run), "the training child")
    sweep.send_signal(signal.SIGINT)
    code, _, err = finish(sweep)
    assert code == 130 and "sweep stopped; rerun the same command to resume" in err
    assert not processes_of(run)
    # kill -9 of the sweep: its child dies with it (parent-death signal)
    sweep = start_sweep(path, "--jobs", "2")
    wait_for(lambda: processes_of(run), "the training child")
    sweep.kill()
    sweep.wait()
    wait_for(lambda: not processes_of(run), "the orphaned child to die", timeout_s=60)
    assert not (run / "final").exists()  # it died, rather than trained to the end
    # a crash at each point of the cycle, then a clean finish. With a core free, final/'s evaluation runs beside
    # best/'s, so a crash after eval-best may cut eval-last off (the resume finishes it) or find it done already,
    # and then no later call reaches the point after eval-last
    stages = [("sweep-after-train", lambda: is_complete(run / "final") and not (run / "eval-best").exists()),
              ("sweep-after-eval-best", lambda: not sweep_module._eval_needed(run, "eval-best")),
              ("sweep-after-eval-last", lambda: not sweep_module._eval_needed(run, "eval-last")),
              ("sweep-before-report", lambda: not (tmp_path / "report").exists())]
    for point, state in stages:
        if point == "sweep-after-eval-last" and state():
            continue
        code, _, err = finish(start_sweep(path, "--jobs", "2", crash_at=point))
        assert code == CRASH_EXIT_CODE and state(), (point, err)
    code, out, err = finish(start_sweep(path, "--jobs", "2"))
    assert code == 0, err
    assert f"{RUN1}: finished, skipped" in out and (tmp_path / "report" / "report.md").exists()
    assert artefacts(run) == artefacts(reference[0] / "runs" / RUN1)
    assert not list(run.glob("checkpoint-*"))  # removed once final/ was complete (the default)


@pytest.mark.slow
def test_evaluations_in_shards_stopped_between_them_resume_to_what_one_process_gives(reference, tmp_path):
    run = tmp_path / "runs" / RUN1  # the reference's trained run (best/ at step 1, final/ at 2), not yet evaluated
    shutil.copytree(reference[0] / "runs" / RUN1, run, ignore=shutil.ignore_patterns("eval-*"))
    path = write_sweep(tmp_path, seeds=[1], eval_limit=6)  # 6 problems at the run's 4 a batch: 2 batches, 2 shards
    code, _, err = finish(start_sweep(path, "--jobs", "2", crash_at="sweep-after-eval-best 1/2"))
    assert code == CRASH_EXIT_CODE and (run / "eval-best" / "shard-1-of-2" / "results.json").exists(), err
    code, out, err = finish(start_sweep(path, "--jobs", "2"))
    assert code == 0, err
    assert "evaluating shard 2/2 of" in out and out.count(f"{RUN1}: done in") == 1
    sweep = load_sweep(path)
    for phase in ("eval-best", "eval-last"):
        sharded = json.loads((run / phase / "results.json").read_text())
        assert sharded["status"] == "complete" and sharded["from_shards"] == ["shard-1-of-2", "shard-2-of-2"]
        whole = tmp_path / f"whole-{phase}"  # the same evaluation in one process
        args = sweep_module._eval_args(sweep, run, phase)
        assert main([*args[: args.index("--output") + 1], str(whole), *args[args.index("--output") + 2 :]]) == 0
        assert read_samples(run / phase / "samples.jsonl") == read_samples(whole / "samples.jsonl")
        assert sharded["metrics"] == json.loads((whole / "results.json").read_text())["metrics"]


@pytest.mark.slow
def test_a_failed_run_lets_the_running_ones_finish_and_starts_no_new_one(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(REPO)
    broken = write_recipe(tmp_path / "broken.yaml", task="jsonl:/nonexistent.jsonl")
    path = write_sweep(tmp_path, recipes=[str(R1), str(broken)])
    log = tmp_path / "runs" / "logs" / "broken-seed1.log"
    with pytest.raises(SweepError, match=f"broken-seed1 \\(train failed with exit status 2: error: .*; log: {log}\\); "
                                         "2 run\\(s\\) not started"):
        run_sweep(path, jobs=2)
    runs = tmp_path / "runs"
    assert is_complete(runs / RUN1 / "final") and (runs / RUN1 / "eval-last" / "results.json").exists()
    assert not (runs / RUN2).exists() and not (runs / "broken-seed2").exists()


def test_test_evaluations_use_the_runs_test_task_prefix_setting_and_batch_size(tmp_path):
    from memoryr.evaluation.sweep import _eval_args

    sweep = load_sweep(write_sweep(tmp_path))
    run = tmp_path / "runs" / RUN1
    run.mkdir(parents=True)
    script = {"task": "reasoning-gym:basic_arithmetic", "eval_task": None, "shots": 3, "exemplars": "arith1",
              "prefill": "<reasoning>\n", "grading": "strict", "task_size": 2000, "task_config": None, "data_dir": None}
    record = {"seed": 4, "config": {"script": script, "training": {"max_completion_length": 96}}}
    (run / "run.json").write_text(json.dumps(record))
    args = _eval_args(sweep, run, "eval-best")
    assert args[args.index("--task") + 1] == "reasoning-gym:basic_arithmetic"
    assert args[args.index("--share-prefix") + 1] == "true"  # recorded before the setting existed: the default
    assert "--batch-size" not in args  # likewise: `memoryr eval`'s default
    script.update(test_task="jsonl:results/study3/test-problems.jsonl", eval_share_prefix=False, eval_batch_size=64)
    (run / "run.json").write_text(json.dumps(record))
    args = _eval_args(sweep, run, "eval-last")
    assert args[args.index("--task") + 1] == "jsonl:results/study3/test-problems.jsonl"
    assert args[args.index("--share-prefix") + 1] == "false" and args[args.index("--model") + 1] == str(run / "final")
    assert args[args.index("--batch-size") + 1] == "64"
