"""The sweep: a grid of real tiny runs, skipping finished ones, resuming interrupted ones, then a report."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from memoryr.sweep import SweepError, load_sweep, report_finished, run_sweep

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model_name_or_path", "tiny-random", "--max_completion_length", "16", "--gradient_checkpointing", "false",
        "--max_steps", "2", "--save_steps", "2", "--eval_steps", "2", "--eval_limit", "4", "--eval_batch_size", "4",
        "--disable_tqdm", "true"]


def write_sweep(tmp_path: Path, **changes) -> Path:
    spec = {"out": str(tmp_path / "runs"), "recipes": [str(REPO / "recipes" / "gsm8k-memoryrplus-cpu.yaml")],
            "seeds": [1, 2], "overrides": TINY, "eval_limit": 3, "report": str(tmp_path / "report")}
    spec.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_sweep_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sweep(tmp_path / "none.yaml")
    with pytest.raises(ValueError, match="unknown key\\(s\\) seed"):
        load_sweep(write_sweep(tmp_path, seed=[1]))
    with pytest.raises(FileNotFoundError, match="recipe\\(s\\) not found: nope.yaml"):
        load_sweep(write_sweep(tmp_path, recipes=["nope.yaml"]))
    with pytest.raises(ValueError, match="seeds must be a non-empty list of integers"):
        load_sweep(write_sweep(tmp_path, seeds=[]))


@pytest.mark.slow
def test_sweep_runs_evaluates_skips_and_resumes(tmp_path, tiny_model_path, data_dir, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    path = write_sweep(tmp_path)
    report = run_sweep(path)
    runs = tmp_path / "runs"
    for seed in (1, 2):
        run = runs / f"gsm8k-memoryrplus-cpu-seed{seed}"
        assert (run / "final").exists() and json.loads((run / "run.json").read_text())["seed"] == seed
        for name in ("best", "last"):
            results = json.loads((run / f"eval-{name}" / "results.json").read_text())
            assert results["status"] == "complete"
            # evaluated like the run's own held-out eval: its seed and completion length
            assert results["settings"]["seed"] == seed and results["settings"]["max_new_tokens"] == 16
    assert (report / "report.md").exists()
    copied = report / "runs" / "gsm8k-memoryrplus-cpu-seed1"
    for name in ("metrics.jsonl", "evals.json", "run.json", "eval-best/results.json", "eval-last/results.json"):
        assert (copied / name).read_bytes() == (runs / "gsm8k-memoryrplus-cpu-seed1" / name).read_bytes(), name
    assert not list(report.rglob("*.safetensors"))
    assert re.search(r"seed2: training \(time left for this sweep: \d+ min\)", capsys.readouterr().out)
    # an interrupted run (checkpoint, no final/) is resumed, a missing one trained from scratch; the resumed
    # run's short time does not feed the estimate of time left
    shutil.rmtree(runs / "gsm8k-memoryrplus-cpu-seed1" / "final")
    shutil.rmtree(runs / "gsm8k-memoryrplus-cpu-seed2")
    run_sweep(path)
    out = capsys.readouterr().out
    assert "resuming" in out and "seed2: training (time left for this sweep: unknown)" in out
    assert all((runs / f"gsm8k-memoryrplus-cpu-seed{seed}" / "final").exists() for seed in (1, 2))
    # finished runs are skipped
    run_sweep(path)
    assert "gsm8k-memoryrplus-cpu-seed1: finished, skipped" in capsys.readouterr().out
    # a partial sweep reports only what has finished
    interrupted = runs / "gsm8k-memoryrplus-cpu-seed2"
    shutil.rmtree(interrupted / "final")
    shutil.rmtree(report)
    report_finished(path)
    assert "1 of 2 runs finished: gsm8k-memoryrplus-cpu-seed1" in capsys.readouterr().out
    assert [p.name for p in (report / "runs").iterdir()] == ["gsm8k-memoryrplus-cpu-seed1"]
    assert [r["seed"] for r in json.loads((report / "report.json").read_text())["runs"]] == [1]


def test_a_failing_run_stops_the_sweep_with_one_line(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(REPO)
    path = write_sweep(tmp_path, overrides=[*TINY, "--task", "jsonl:/nonexistent.jsonl"], seeds=[1])
    with pytest.raises(SweepError, match="`memoryr train --config .*` failed with exit status 2"):
        run_sweep(path)


def test_report_only_before_any_run_finished_is_a_clear_error(tmp_path):
    with pytest.raises(SweepError, match="no finished run"):
        report_finished(write_sweep(tmp_path))
