"""Reports on synthetic run folders: collapse flags, the best (last) accuracy table by hand, plots, errors."""

import json
from pathlib import Path

import pytest

from memoryr.report import CollapseThresholds, format_cell, load_run, method_name, report, report_cli

STEPS = 50


def ramp(start: float, end: float, step: int) -> float:
    return start + (end - start) * (step - 1) / (STEPS - 1)


def write_run(folder: Path, reward_funcs: list[str], seed: int, curves: dict, evals: list[float] | None = None) -> Path:
    """A run folder with run.json and metrics.jsonl; curves maps a metric to (first, last) values, linear between."""
    folder.mkdir(parents=True)
    config = {"script": {"reward_funcs": reward_funcs, "task": "gsm8k", "eval_task": None}, "training": {"seed": seed}}
    (folder / "run.json").write_text(json.dumps({"format_version": 1, "config": config}))
    rows = []
    for step in range(1, STEPS + 1):
        rows.append({"loss": 0.01, "step": step, **{key: ramp(*ends, step) for key, ends in curves.items()}})
        if evals and step % 10 == 0 and step // 10 <= len(evals):
            rows.append({"eval/accuracy": evals[step // 10 - 1], "eval/parse_rate": 0.9, "step": step})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


R1 = ["correctness", "int_answer", "strict_format", "soft_format", "xml_count"]
COLLAPSED = {  # completions shrink to a few tokens, format rewards max out, correctness falls, no variance left
    "completions/mean_length": (150, 12), "completions/min_length": (40, 10), "completions/max_length": (200, 14),
    "completions/clipped_ratio": (0.2, 0.0), "rewards/correctness/mean": (0.30, 0.25),
    "rewards/strict_format/mean": (0.0, 0.5), "rewards/soft_format/mean": (0.1, 0.5), "rewards/xml_count/mean": (0.2, 0.5),
    "rewards/int_answer/mean": (0.2, 0.5), "reward": (0.8, 2.25), "frac_reward_zero_std": (0.3, 1.0),
    "entropy": (1.2, 0.01),
}
HEALTHY = {  # format rewards rise, but so does correctness; lengths stay put
    "completions/mean_length": (150, 140), "completions/min_length": (40, 40), "completions/max_length": (200, 200),
    "completions/clipped_ratio": (0.1, 0.1), "rewards/correctness/mean": (0.20, 0.40),
    "rewards/strict_format/mean": (0.0, 0.3), "rewards/soft_format/mean": (0.1, 0.3), "rewards/xml_count/mean": (0.2, 0.3),
    "rewards/memoryr+/mean": (0.5, 0.7), "reward": (0.8, 1.9), "frac_reward_zero_std": (0.3, 0.2),
    "entropy": (1.2, 0.9), "memory/failure_entries": (8, 400),
}
COSINE = {k: v for k, v in HEALTHY.items() if "memor" not in k and "correctness" not in k} | {
    "rewards/cosine/mean": (-0.5, 0.1)  # no plain correctness reward: the cosine reward stands in for it
}


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [
        write_run(tmp_path / "r1-s0", R1, 0, COLLAPSED, evals=[0.30, 0.20, 0.10]),
        write_run(tmp_path / "mplus-s0", R1 + ["memoryr+"], 0, HEALTHY, evals=[0.30, 0.40, 0.35]),
        write_run(tmp_path / "mplus-s1", R1 + ["memoryr+"], 1, HEALTHY, evals=[0.20, 0.30, 0.32]),
        write_run(tmp_path / "cos-s0", ["cosine", "int_answer", "strict_format", "soft_format", "xml_count"], 0, COSINE),
    ]


def test_method_names():
    assert method_name(R1) == "R1"
    assert method_name(["cosine", "xml_count"]) == "Cosine"
    assert method_name(R1 + ["memoryr"]) == "Memory-R"
    assert method_name(R1 + ["memoryr+"]) == "Memory-R+"


def test_report_flags_collapse_and_tabulates_best_and_last(runs, tmp_path):
    md = report(runs, tmp_path / "out", CollapseThresholds())
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    by_run = {Path(r["run"]).name: r for r in data["runs"]}

    collapsed = by_run["r1-s0"]["flags"]
    assert collapsed["length"]["flagged"] and collapsed["length"]["shrank"] and not collapsed["length"]["pinned"]
    assert collapsed["reward_mode"]["flagged"] and collapsed["reward_mode"]["format_rise"] > 1.0
    assert collapsed["reward_mode"]["correctness_change"] < 0
    assert collapsed["zero_advantage"]["flagged"]
    for name in ("mplus-s0", "mplus-s1", "cos-s0"):
        assert not any(flag["flagged"] for flag in by_run[name]["flags"].values()), name
    assert by_run["cos-s0"]["flags"]["reward_mode"]["correctness_key"] == "rewards/cosine/mean"
    assert by_run["mplus-s0"]["method"] == "Memory-R+" and by_run["mplus-s1"]["seed"] == 1
    assert by_run["r1-s0"]["eval"]["gsm8k"] == {"best": 0.30, "last": 0.10, "last_step": 30}

    # Memory-R+: best 40 and 32 -> 36.0 ± 5.7 (sample std sqrt(32)); last 35 and 32 -> 33.5 ± 2.1 (sqrt(4.5))
    cell = data["accuracy_table_pct"]["gsm8k"]["Memory-R+"]
    assert cell["n"] == 2 and cell["best_mean"] == pytest.approx(36.0) and cell["best_std"] == pytest.approx(32**0.5)
    assert cell["last_mean"] == pytest.approx(33.5) and cell["last_std"] == pytest.approx(4.5**0.5)
    text = md.read_text()
    assert "| eval task | R1 | Cosine | Memory-R+ |" in text
    assert "| gsm8k | 30.0 (10.0), n=1 | no eval rows | 36.0 ± 5.7 (33.5 ± 2.1), n=2 |" in text
    assert "**yes**" in text
    for png in ("rewards.png", "correctness.png", "length.png", "zero_std.png", "entropy.png", "memory.png", "eval.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in text


def test_thresholds_are_configurable_from_the_command_line(runs, tmp_path, capsys):
    report_cli([str(runs[0]), "--out", str(tmp_path / "out"), "--length-drop", "0.05", "--zero-std-high", "1.1",
                "--format-rise", "5"])
    flags = json.loads((tmp_path / "out" / "report.json").read_text())["runs"][0]["flags"]
    assert not flags["length"]["flagged"] and not flags["zero_advantage"]["flagged"]
    assert not flags["reward_mode"]["flagged"]
    assert "Collapse flags" in capsys.readouterr().out
    with pytest.raises(ValueError, match="edge"):
        CollapseThresholds(edge=0)


def test_length_pinned_at_the_maximum_is_collapse(tmp_path):
    run = write_run(tmp_path / "pinned", R1, 0, {**HEALTHY, "completions/clipped_ratio": (0.2, 0.95)})
    report([run], tmp_path / "out", CollapseThresholds())
    flag = json.loads((tmp_path / "out" / "report.json").read_text())["runs"][0]["flags"]["length"]
    assert flag["flagged"] and flag["pinned"] and not flag["shrank"]


def test_runs_without_eval_rows_say_so(runs, tmp_path):
    text = report([runs[3]], tmp_path / "out", CollapseThresholds()).read_text()
    assert "No eval accuracy rows" in text
    assert not (tmp_path / "out" / "eval.png").exists()


def test_eval_rows_per_named_task(tmp_path):
    run = write_run(tmp_path / "named", R1, 0, HEALTHY)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"eval/math500/accuracy": 0.25, "eval/math500/parse_rate": 0.5, "step": 50}) + "\n")
    assert load_run(run).evals == {"math500": [{"step": 50, "accuracy": 0.25, "parse_rate": 0.5}]}


def test_missing_or_empty_runs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run.json"):
        report([tmp_path / "nope"], tmp_path / "out", CollapseThresholds())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="memoryr run folder"):
        report([empty], tmp_path / "out", CollapseThresholds())
    config = {"script": {"reward_funcs": R1, "task": "gsm8k"}, "training": {}}
    (empty / "run.json").write_text(json.dumps({"config": config}))
    (empty / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="no training steps"):
        report([empty], tmp_path / "out", CollapseThresholds())
    with pytest.raises(ValueError, match="no run folders"):
        report([], tmp_path / "out", CollapseThresholds())


def test_format_cell_with_a_single_run():
    cell = {"n": 1, "best_mean": 40.0, "best_std": None, "last_mean": 35.0, "last_std": None}
    assert format_cell(cell) == "40.0 (35.0), n=1"


def test_no_memory_plot_without_memory_runs(runs, tmp_path):
    md = report([runs[0]], tmp_path / "r1only", CollapseThresholds())
    assert (tmp_path / "r1only" / "entropy.png").exists() and not (tmp_path / "r1only" / "memory.png").exists()
    assert "memory.png" not in md.read_text()


def test_training_dynamics_average_each_runs_first_and_last_windows(runs, tmp_path):
    # 50 steps, edge 0.1 -> windows of 5 steps; on a linear ramp a window's mean is its middle step's value.
    # R1: entropy 1.0 -> 0.02 (first 1 - 0.98 * 2/49 = 0.96, last 1 - 0.98 * 47/49 = 0.06) and flat 0.4
    # -> 0.68 -> 0.23 over the two runs; Memory-R+ (HEALTHY) 1.2 -> 0.9 gives 1.19 -> 0.91.
    falling = write_run(tmp_path / "r1-a", R1, 1, {"entropy": (1.0, 0.02)})
    flat = write_run(tmp_path / "r1-b", R1, 2, {"entropy": (0.4, 0.4)})
    md = report([falling, flat, runs[1]], tmp_path / "out", CollapseThresholds())
    dynamics = json.loads((tmp_path / "out" / "report.json").read_text())["dynamics"]
    assert dynamics["entropy"]["R1"] == {"n": 2, "first": pytest.approx(0.68), "last": pytest.approx(0.23)}
    # Memory-R+ (HEALTHY): failure memory 8 -> 400, so 8 + 392 * 2/49 = 24 and 8 + 392 * 47/49 = 384
    assert dynamics["memory/failure_entries"] == {"Memory-R+": {"n": 1, "first": 24.0, "last": 384.0}}
    text = md.read_text()
    assert "| entropy (nats) | 0.68 -> 0.23 | 1.19 -> 0.91 |" in text
    assert "| failure-memory responses | - | 24 -> 384 |" in text
    assert "cosine reward" not in text  # no run logged it
