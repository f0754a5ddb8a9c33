"""Reports on synthetic run folders: collapse flags, the best (last) accuracy table by hand, plots, errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memoryr import checkpoints as checkpoints_module
from memoryr.cli import main
from memoryr.evaluation.compare import bootstrap_ci
from memoryr.evaluation.report import (
    CollapseThresholds,
    format_cell,
    load_run,
    method_colours,
    method_name,
    ordered_methods,
    report,
    report_cli,
)
from memoryr.evaluation.summary import summarise_run

STEPS = 50


def ramp(start: float, end: float, step: int) -> float:
    return start + (end - start) * (step - 1) / (STEPS - 1)


def write_run(
    folder: Path,
    reward_funcs: list[str],
    seed: int,
    curves: dict,
    evals: list[float] | None = None,
    method: str | None = None,
    eval_split: str | None = None,
) -> Path:
    """A run folder with run.json and metrics.jsonl; curves maps a metric to (first, last) values, linear between.
    eval_split is logged with the eval rows as `eval/split` (older runs did not log it)."""
    folder.mkdir(parents=True)
    script = {"reward_funcs": reward_funcs, "task": "gsm8k", "eval_task": None, "method": method}
    config = {"script": script, "training": {"seed": seed}}
    (folder / "run.json").write_text(json.dumps({"format_version": 1, "config": config}))
    rows = []
    for step in range(1, STEPS + 1):
        rows.append({"loss": 0.01, "step": step, **{key: ramp(*ends, step) for key, ends in curves.items()}})
        if evals and step % 10 == 0 and step // 10 <= len(evals):
            split = {"eval/split": eval_split} if eval_split else {}
            rows.append({"eval/accuracy": evals[step // 10 - 1], "eval/parse_rate": 0.9, "step": step, **split})
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


@pytest.mark.parametrize("before,flagged", [(0.05, False), (0.08, True)])
def test_a_held_out_gain_over_the_untrained_model_is_not_reward_mode_collapse(tmp_path, before, flagged):
    # training correctness falls while the format rewards max out; held-out accuracy ends at 10%
    run = write_run(tmp_path / "run", R1, 0, COLLAPSED, evals=[0.30, 0.20, 0.10])
    metrics = run / "metrics.jsonl"
    metrics.write_text(json.dumps({"eval/accuracy": before, "eval/parse_rate": 0.5, "step": 0}) + "\n" + metrics.read_text())
    flag = report([run], tmp_path / "out", CollapseThresholds()).parent / "report.json"
    reward_mode = json.loads(flag.read_text())["runs"][0]["flags"]["reward_mode"]
    # 5% -> 10% is a gain of 0.05 (the threshold): not collapse; 8% -> 10% is not enough
    assert reward_mode["flagged"] is flagged
    assert f"held-out accuracy {100 * before:.1f}% before training -> 10.0% last" in reward_mode["why"]


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


def test_a_torn_last_metrics_line_warns_and_a_bad_one_before_it_is_one_error_line(runs, tmp_path, capsys):
    metrics = runs[0] / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"loss": 0.01, "st')  # the run crashed, or is still writing
    assert main(["report", str(runs[0]), "--out", str(tmp_path / "out")]) == 0
    assert f"[memoryr] {metrics}: dropped a torn last line" in capsys.readouterr().out
    metrics.write_text('{"loss": 0.01, "st\n' + whole)
    assert main(["report", str(runs[0]), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {metrics}:1: not valid JSON; the log is damaged\n"


def test_the_summary_reads_metrics_as_the_report_does(runs, capsys):
    metrics = runs[0] / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"loss": 0.01, "st')
    assert f"steps logged: {STEPS} (last step {STEPS})" in summarise_run(runs[0])  # it used to crash here
    assert f"{metrics}: dropped a torn last line" in capsys.readouterr().out
    metrics.write_text(whole.replace("\n", "\n[]\n", 1))
    with pytest.raises(ValueError, match="metrics.jsonl:2: expected a JSON object, got list"):
        summarise_run(runs[0])


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
    falling = write_run(tmp_path / "r1-a", R1, 1, {"entropy": (1.0, 0.02), "advantage/mixed/share": (0.5, 0.5)})
    flat = write_run(tmp_path / "r1-b", R1, 2, {"entropy": (0.4, 0.4)})
    md = report([falling, flat, runs[1]], tmp_path / "out", CollapseThresholds())
    dynamics = json.loads((tmp_path / "out" / "report.json").read_text())["dynamics"]
    assert dynamics["entropy"]["R1"] == {"n": 2, "first": pytest.approx(0.68), "last": pytest.approx(0.23)}
    # Memory-R+ (HEALTHY): failure memory 8 -> 400, so 8 + 392 * 2/49 = 24 and 8 + 392 * 47/49 = 384
    assert dynamics["memory/failure_entries"] == {"Memory-R+": {"n": 1, "first": 24.0, "last": 384.0}}
    text = md.read_text()
    assert "| runs averaged | 2 | 1 |" in text
    assert "| entropy (nats) | 0.68 -> 0.23 | 1.19 -> 0.91 |" in text
    assert "| failure-memory responses | - | 24 -> 384 |" in text
    assert "| share of the advantages' magnitude: mixed groups | 0.50 -> 0.50 (n=1) | - |" in text  # one R1 run logged it
    assert "cosine reward" not in text  # no run logged it


# ---------------------------------------------------------------- held-out test evaluations, paired comparisons


def write_held_out(run: Path, model: str, verdicts: str, status: str = "complete", seed: int = 0, **settings) -> Path:
    """eval-<model>/ as `memoryr eval` writes it; verdicts "1101" marks problems 0, 1 and 3 correct. samples.jsonl is
    written in reverse index order: the report must put problems back in index order."""
    folder = run / f"eval-{model}"
    folder.mkdir(parents=True)
    correct = [v == "1" for v in verdicts]
    metrics = {"n": len(correct), "pass@1": sum(correct) / len(correct), "parse_rate": 1.0, "mean_length": 5.0}
    results = {"format_version": 1, "status": status, "task": "gsm8k", "split": "test", "metrics": metrics,
               "settings": {"seed": seed, "split": "test", "limit": len(correct), **settings}}
    (folder / "results.json").write_text(json.dumps(results))
    samples = [{"index": i, "question": f"q{i}", "gold": "7", "completions": ["..."], "num_tokens": [5],
                "extracted": ["7" if c else "8"], "correct": [c]} for i, c in enumerate(correct)]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(samples)))
    return folder


# Per seed, 10 test problems. best: R1 30/50/40 %, Memory-R+ 60/40/40 %; last: R1 20/40/30 %, Memory-R+ 30/50/40 %.
HELD_OUT = {
    ("R1", 1): ("1110000000", "1100000000"),
    ("R1", 2): ("1111100000", "1111000000"),
    ("R1", 3): ("1111000000", "1110000000"),
    ("Memory-R+", 1): ("1111110000", "1110000000"),
    ("Memory-R+", 2): ("1111000000", "1111100000"),
    ("Memory-R+", 3): ("0111100000", "1111000000"),
}


@pytest.fixture
def sweep(tmp_path) -> list[Path]:
    """2 methods x 3 seeds, in-training evals on the validation split, best and last models evaluated on test."""
    folders = []
    for (method, seed), (best, last) in HELD_OUT.items():
        funcs = R1 + ["memoryr+"] if method == "Memory-R+" else R1
        run = write_run(tmp_path / f"{method}-s{seed}", funcs, seed, HEALTHY, evals=[0.3, 0.4], eval_split="validation")
        write_held_out(run, "best", best, seed=seed)
        write_held_out(run, "last", last, seed=seed)
        folders.append(run)
    return folders


def test_held_out_evals_are_read_in_index_order(sweep):
    run = load_run(sweep[3])  # Memory-R+ seed 1
    assert run.test["best"].correct == [True] * 6 + [False] * 4
    assert run.test["best"].accuracy == 0.6 and run.test["best"].n == 10 and run.test["best"].split == "test"
    assert run.selection_split == "validation" and run.selection_logged


def test_named_contrasts_compare_any_two_methods(sweep, tmp_path):
    md = report(sweep, tmp_path / "out", CollapseThresholds(), contrasts={"reversed": ("R1", "Memory-R+")})
    contrast = json.loads((tmp_path / "out" / "report.json").read_text())["contrasts"]["reversed"]
    assert (contrast["method"], contrast["baseline"]) == ("R1", "Memory-R+")
    best = contrast["models"]["best"]  # R1 30, 50, 40 against Memory-R+ 60, 40, 40
    assert best["differences_pp"] == pytest.approx([-30.0, 10.0, 0.0]) and (best["wins"], best["losses"]) == (1, 1)
    assert "| reversed | R1 - Memory-R+ | best | 1, 2, 3 | -30.0, +10.0, +0.0 | -6.7 |" in md.read_text()
    with pytest.raises(ValueError, match="contrast 'x' names no method of these runs: Cosine"):
        report(sweep, tmp_path / "other", CollapseThresholds(), contrasts={"x": ("Cosine", "R1")})


def test_incomplete_or_missing_held_out_evals_are_left_out(tmp_path):
    run = write_run(tmp_path / "r", R1, 0, HEALTHY)
    write_held_out(run, "best", "10", status="running")
    assert load_run(run).test == {}


def test_paired_comparisons_by_seed_and_problem(sweep, tmp_path):
    md = report(sweep, tmp_path / "out", CollapseThresholds())
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["format_version"] == 2
    run = next(r for r in data["runs"] if Path(r["run"]).name == "R1-s1")
    assert run["test"]["best"] == {"task": "gsm8k", "split": "test", "n": 10, "accuracy": 0.3}
    assert run["test"]["last"]["accuracy"] == 0.2
    assert run["selection_split"] == "validation" and run["selection_split_logged"]

    # best: R1 30, 50, 40 -> 40 ± 10; Memory-R+ 60, 40, 40 -> 46.67 ± sqrt(400/3) (deviations 13.3, -6.7, -6.7)
    r1, mplus = data["test_accuracy_pct"]["R1"], data["test_accuracy_pct"]["Memory-R+"]
    assert r1["best"] == {"n": 3, "mean": pytest.approx(40.0), "std": pytest.approx(10.0)}
    assert mplus["best"] == {"n": 3, "mean": pytest.approx(140 / 3), "std": pytest.approx((400 / 3) ** 0.5)}
    assert r1["last"]["mean"] == pytest.approx(30.0) and mplus["last"]["mean"] == pytest.approx(40.0)
    assert (r1["task"], r1["split"]) == ("gsm8k", "test")

    paired = data["paired"]
    assert paired["baseline"] == "R1" and list(paired["comparisons"]) == ["Memory-R+"]
    best, last = paired["comparisons"]["Memory-R+"]["best"], paired["comparisons"]["Memory-R+"]["last"]
    # best: differences +30, -10, 0 -> mean 6.67, one win, one tie, one loss
    assert best["seeds"] == [1, 2, 3] and best["differences_pp"] == pytest.approx([30.0, -10.0, 0.0])
    assert best["mean_pp"] == pytest.approx(20 / 3) and (best["wins"], best["ties"], best["losses"]) == (1, 1, 1)
    assert best["ci95_pp"] == pytest.approx(list(bootstrap_ci([30.0, -10.0, 0.0])))
    # McNemar, best: seed 1 Memory-R+ alone right on problems 3-5 (c 3); seed 2 R1 alone on 4 (b 1);
    # seed 3 R1 alone on 0, Memory-R+ alone on 4 (b 1, c 1). b 2, c 4: p = 2 * (1 + 6 + 15) / 64 = 0.6875
    assert best["mcnemar"] == {"seeds": [1, 2, 3], "n": 30, "b": 2, "c": 4, "p": pytest.approx(0.6875)}
    # last: Memory-R+ is right on one more problem at every seed: +10 each, CI collapses, b 0, c 3, p = 2/8
    assert last["differences_pp"] == pytest.approx([10.0, 10.0, 10.0]) and last["mean_pp"] == pytest.approx(10.0)
    assert last["ci95_pp"] == pytest.approx([10.0, 10.0]) and (last["wins"], last["ties"], last["losses"]) == (3, 0, 0)
    assert last["mcnemar"] == {"seeds": [1, 2, 3], "n": 30, "b": 0, "c": 3, "p": pytest.approx(0.25)}

    text = md.read_text()
    assert "| R1 | gsm8k | test | 40.0 ± 10.0, n=3 | 30.0 ± 10.0, n=3 |" in text
    assert "| Memory-R+ | gsm8k | test | 46.7 ± 11.5, n=3 | 40.0 ± 10.0, n=3 |" in text
    low, high = bootstrap_ci([30.0, -10.0, 0.0])
    both = best["ci95_seeds_problems_pp"]
    assert both[0] <= best["mean_pp"] <= both[1]
    assert (f"| Memory-R+ | best | 1, 2, 3 | +30.0, -10.0, +0.0 | +6.7 | {low:+.1f} to {high:+.1f} | "
            f"{both[0]:+.1f} to {both[1]:+.1f} | 1/1/1 | 2 / 4 of 30 | 0.688 |") in text
    # every seed +10 pp: no spread over seeds, but the 10 problems resampled still move it
    low2, high2 = last["ci95_seeds_problems_pp"]
    assert low2 < 10.0 < high2
    assert ("| Memory-R+ | last | 1, 2, 3 | +10.0, +10.0, +10.0 | +10.0 | +10.0 to +10.0 | "
            f"{low2:+.1f} to {high2:+.1f} | 3/0/0 | 0 / 3 of 30 | 0.25 |") in text
    assert "## Paired comparisons vs R1" in text
    assert "Split of the in-training evals (`eval/split`): gsm8k: validation." in text
    assert "chosen on the split `validation`." in text and "biased upwards" not in text


def test_baseline_flag_swaps_the_sides(sweep, tmp_path):
    report_cli([*map(str, sweep), "--out", str(tmp_path / "out"), "--baseline", "Memory-R+"])
    paired = json.loads((tmp_path / "out" / "report.json").read_text())["paired"]
    assert paired["baseline"] == "Memory-R+" and list(paired["comparisons"]) == ["R1"]
    best = paired["comparisons"]["R1"]["best"]
    assert best["differences_pp"] == pytest.approx([-30.0, 10.0, 0.0])
    assert (best["mcnemar"]["b"], best["mcnemar"]["c"]) == (4, 2)


def test_a_baseline_that_is_no_method_writes_nothing(sweep, tmp_path):
    with pytest.raises(ValueError, match=r"baseline 'Cosine' is none of the methods in these runs: R1, Memory-R\+"):
        report(sweep, tmp_path / "out", CollapseThresholds(), baseline="Cosine")
    assert not (tmp_path / "out").exists()


def test_runs_without_test_evals_say_the_paired_section_needs_them(runs, tmp_path):
    text = report(runs, tmp_path / "out", CollapseThresholds()).read_text()
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["test_accuracy_pct"] == {} and data["paired"]["comparisons"] == {}
    assert "## Test accuracy" not in text
    assert "No run has held-out test evaluations (eval-best/, eval-last/" in text
    assert "gsm8k: split not recorded." in text


def test_old_runs_chose_best_on_the_test_split_and_the_report_says_so(tmp_path):
    folders = []
    for funcs, seed in ((R1, 1), (R1 + ["memoryr"], 1)):
        run = write_run(tmp_path / f"{method_name(funcs)}-{seed}", funcs, seed, HEALTHY, evals=[0.3])  # no eval/split
        write_held_out(run, "best", "1100")
        folders.append(run)
    text = report(folders, tmp_path / "out", CollapseThresholds()).read_text()
    assert "chosen on the split `test` (run.json's eval_split" in text
    assert "For 2 of 2 runs that is the split best is scored on here, so their best accuracy is biased upwards" in text
    # one seed: no CI; identical verdicts: no discordant problem, p = 1
    assert ("| Memory-R | best | 1 | +0.0 | +0.0 | n/a (one seed) | n/a (one seed or no samples.jsonl) | 0/1/0 "
            "| 0 / 0 of 4 | 1 |") in text
    assert "| Memory-R | last |" not in text  # no eval-last/


def test_custom_method_labels_from_run_json(tmp_path):
    folders = [
        write_run(tmp_path / "ref-s1", R1 + ["memoryr+"], 1, HEALTHY, method="Memory-R+ (reference)"),
        write_run(tmp_path / "r1-s1", R1, 1, HEALTHY, method=None),  # null: named by its rewards
        write_run(tmp_path / "tuned-s1", R1 + ["memoryr+"], 1, HEALTHY, method="tuned"),
    ]
    for folder, verdicts in zip(folders, ("1110", "1000", "1100")):
        write_held_out(folder, "last", verdicts)
    assert [load_run(f).method for f in folders] == ["Memory-R+ (reference)", "R1", "tuned"]
    runs = [load_run(f) for f in folders]
    assert ordered_methods(runs) == ["R1", "Memory-R+ (reference)", "tuned"]
    assert method_colours(ordered_methods(runs)) == {
        "R1": "tab:blue", "Memory-R+ (reference)": "tab:purple", "tuned": "tab:brown"
    }
    md = report(folders, tmp_path / "out", CollapseThresholds(), baseline="Memory-R+ (reference)")
    paired = json.loads((tmp_path / "out" / "report.json").read_text())["paired"]["comparisons"]
    assert list(paired) == ["R1", "tuned"]
    assert paired["R1"]["last"]["differences_pp"] == pytest.approx([-50.0])
    assert paired["tuned"]["last"]["mcnemar"] == {"seeds": [1], "n": 4, "b": 1, "c": 0, "p": 1.0}
    text = md.read_text()
    assert "| metric | R1 | Memory-R+ (reference) | tuned |" in text
    assert "## Paired comparisons vs Memory-R+ (reference)" in text
    assert (tmp_path / "out" / "rewards.png").exists()


def test_two_runs_of_one_method_and_seed_cannot_be_paired(tmp_path):
    folders = [write_run(tmp_path / name, funcs, 1, HEALTHY) for name, funcs in
               (("a", R1), ("b", R1), ("c", R1 + ["memoryr"]))]
    for folder in folders:
        write_held_out(folder, "best", "10")
    with pytest.raises(ValueError, match="both R1 with seed 1"):
        report(folders, tmp_path / "out", CollapseThresholds())
    assert not (tmp_path / "out").exists()


def test_mechanism_rows_in_the_dynamics_table(tmp_path):
    curves = {**HEALTHY, "memory/exploit_norm_correct_mean": (0.5, 0.5), "memory/exploit_norm_wrong_mean": (0.2, 0.2),
              "memory/explore_raw_wrong_mean": (0.3, 0.3), "frac_groups_with_correct": (0.25, 0.75)}
    run = write_run(tmp_path / "m", R1 + ["memoryr+"], 1, curves)
    text = report([run], tmp_path / "out", CollapseThresholds()).read_text()
    assert "| exploit (normalised), correct completions | 0.50 -> 0.50 |" in text
    assert "| exploit (normalised), wrong completions | 0.20 -> 0.20 |" in text
    assert "| explore (raw), wrong completions | 0.30 -> 0.30 |" in text
    # a ramp 0.25 -> 0.75 over 50 steps: window means at steps 3 and 48, 0.25 + 0.5 * 2/49 and 0.25 + 0.5 * 47/49
    assert "| groups with at least one correct completion | 0.27 -> 0.73 |" in text
    assert "explore (normalised), correct completions" not in text  # not logged
    assert "Paired comparisons" not in text  # one method: nothing to compare


def test_tied_groups_come_from_memoryr_or_are_recovered_from_trls_metric(tmp_path):
    # TRL logs frac_reward_zero_std 0 for groups of equal weighted totals (their float32 std is 2.5e-7)
    trl = {**HEALTHY, "frac_reward_zero_std": (0.0, 0.0)}
    ramp_down = load_run(write_run(tmp_path / "ramp", R1, 1, {**trl, "reward_std": (0.6, 2.5e-7)}))
    assert ramp_down.steps[0]["frac_groups_tied"] == 0.0  # rewards spread: TRL's value stands
    assert ramp_down.steps[-1]["frac_groups_tied"] == 1.0  # no spread at all: every group tied
    logged = load_run(write_run(tmp_path / "new", R1, 2, {**trl, "reward_std": (2.5e-7, 2.5e-7),
                                                          "frac_groups_tied": (0.5, 0.5)}))
    assert {r["frac_groups_tied"] for r in logged.steps} == {0.5}  # logged by memoryr: used as it is
    tied = write_run(tmp_path / "tied", R1, 3, {**trl, "reward_std": (2.5e-7, 2.5e-7)})
    flags = json.loads((report([tied], tmp_path / "out", CollapseThresholds()).parent / "report.json").read_text())
    zero = flags["runs"][0]["flags"]["zero_advantage"]
    assert zero["flagged"] and "zero-std groups 1.00" in zero["why"]


# ---------------------------------------------------------------- the untrained model on the same test problems


def test_untrained_evals_give_a_test_row_and_flag_held_out_collapse(sweep, tmp_path):
    # untrained 30% on the test problems of seeds 1 and 2, none for seed 3; one of other problems (seed 9).
    # last models: R1 20/40/30 %, Memory-R+ 30/50/40 %
    untrained = [write_held_out(tmp_path / "base", f"s{seed}", "1110000000", seed=seed) for seed in (1, 2, 9)]
    md = report(sweep, tmp_path / "out", CollapseThresholds(), untrained=untrained)
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    flags = {Path(r["run"]).name: r["flags"]["held_out"] for r in data["runs"]}
    assert flags["R1-s1"]["flagged"] and flags["R1-s1"]["change_pp"] == pytest.approx(-10.0)  # 30 -> 20
    assert not flags["R1-s2"]["flagged"] and flags["R1-s2"]["change_pp"] == pytest.approx(10.0)  # 30 -> 40
    assert not flags["Memory-R+-s1"]["flagged"] and flags["Memory-R+-s1"]["change_pp"] == pytest.approx(0.0)
    assert flags["R1-s3"] == {"flagged": None, "why": "no untrained evaluation of this run's test problems and settings"}
    assert data["test_accuracy_pct"]["untrained model"]["best"] == {"n": 2, "mean": pytest.approx(30.0), "std": 0.0}
    assert [u["path"] for u in data["untrained"]] == [str(u) for u in untrained]
    text = md.read_text()
    assert "| untrained model | gsm8k | test | 30.0 ± 0.0, n=2 | 30.0 ± 0.0, n=2 |" in text
    assert "**yes**: test 30.0% untrained -> 20.0% last (-10.0 pp)" in text

    report_cli([*map(str, sweep), "--out", str(tmp_path / "cli"), "--untrained", *map(str, untrained),
                "--untrained-drop", "15"])
    runs = json.loads((tmp_path / "cli" / "report.json").read_text())["runs"]
    assert not any(r["flags"]["held_out"]["flagged"] for r in runs)  # a 10-point drop is within 15


def test_the_untrained_model_gets_a_row_per_prompt_and_each_run_its_own_prompts_flag(tmp_path):
    # two regimes scored on the same problems: 3 shots (untrained 30%) and 1 shot (untrained 10%)
    runs = []
    for shots, verdicts in ((3, "1111000000"), (1, "1000000000")):
        run = write_run(tmp_path / f"r1-shots{shots}", R1, 1, HEALTHY, method=f"R1 ({shots} shots)")
        write_held_out(run, "best", verdicts, seed=1, shots=shots)
        write_held_out(run, "last", verdicts, seed=1, shots=shots)
        runs.append(run)
    untrained = [write_held_out(tmp_path / "base", f"shots{shots}", verdicts, seed=1, shots=shots)
                 for shots, verdicts in ((3, "1110000000"), (1, "1000000000"))]
    text = report(runs, tmp_path / "out", CollapseThresholds(), untrained=untrained).read_text()
    assert "| untrained model (shots 3) | gsm8k | test | 30.0, n=1 | 30.0, n=1 |" in text
    assert "| untrained model (shots 1) | gsm8k | test | 10.0, n=1 | 10.0, n=1 |" in text
    flags = {Path(r["run"]).name: r["flags"]["held_out"]["change_pp"]
             for r in json.loads((tmp_path / "out" / "report.json").read_text())["runs"]}
    assert flags == {"r1-shots3": pytest.approx(10.0), "r1-shots1": pytest.approx(0.0)}  # each against its prompt's


def test_held_out_collapse_is_not_measured_without_untrained_evals(sweep, tmp_path):
    report(sweep, tmp_path / "out", CollapseThresholds())
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["runs"][0]["flags"]["held_out"] == {"flagged": None, "why": "no untrained evaluation given (--untrained)"}
    assert "untrained model" not in data["test_accuracy_pct"]


def test_untrained_evals_must_be_complete_and_distinct(sweep, tmp_path):
    first = write_held_out(tmp_path / "a", "s1", "10", seed=1)
    again = write_held_out(tmp_path / "b", "s1", "11", seed=1)
    with pytest.raises(ValueError, match="evaluate the same problems with the same settings"):
        report(sweep, tmp_path / "out", CollapseThresholds(), untrained=[first, again])
    running = write_held_out(tmp_path / "c", "s2", "10", status="running", seed=2)
    with pytest.raises(ValueError, match="no complete `memoryr eval` output"):
        report(sweep, tmp_path / "out", CollapseThresholds(), untrained=[running])
    assert not (tmp_path / "out").exists()


def test_groups_moved_by_other_rewards_are_logged_or_recovered_from_the_correctness_std(tmp_path):
    key = "frac_groups_other_rewards_only"
    logged = load_run(write_run(tmp_path / "new", R1, 1, {**HEALTHY, key: (0.4, 0.4)}))
    assert {r[key] for r in logged.steps} == {0.4}
    # logged before memoryr logged it. No spread in the step's correctness: every group is tied on it, and the
    # groups not tied in total (1 - 0.25) were moved by the other rewards
    uniform = {**HEALTHY, "rewards/correctness/std": (0.0, 0.0), "frac_groups_tied": (0.25, 0.25)}
    assert {r[key] for r in load_run(write_run(tmp_path / "uniform", R1, 2, uniform)).steps} == {0.75}
    # a spread: with one group a step (generation batch = num_generations) that group is untied on correctness;
    # with several groups it is unknown which are
    spread = {**HEALTHY, "rewards/correctness/std": (0.5, 0.5), "frac_groups_tied": (0.0, 0.0)}
    several = write_run(tmp_path / "several", R1, 3, spread)
    assert all(key not in r for r in load_run(several).steps)
    one = write_run(tmp_path / "one", R1, 4, spread)
    record = json.loads((one / "run.json").read_text())
    record["config"]["training"].update(generation_batch_size=8, num_generations=8)
    (one / "run.json").write_text(json.dumps(record))
    assert {r[key] for r in load_run(one).steps} == {0.0}
    text = report([tmp_path / "uniform"], tmp_path / "out", CollapseThresholds()).read_text()
    assert "| groups tied on correctness, moved by the other rewards alone | 0.75 -> 0.75 |" in text


def test_an_untrained_evaluation_of_a_fixed_set_matches_every_seed_unless_it_samples():
    from memoryr.evaluation.evaluate import recorded_settings
    from memoryr.evaluation.report import problem_key, seeded

    run = recorded_settings({"task": "jsonl:results/study3/test-problems.jsonl", "split": "test", "seed": 4,
                             "task_size": 2000, "task_config": '{"max_terms": 2}', "shots": 3,
                             "temperature": 0.0})  # a sweep passes its recipe's generator options to every eval
    untrained = {**run, "seed": 1, "task_size": 1000, "task_config": None}
    assert problem_key(run, 1000) == problem_key(untrained, 1000)  # they change nothing for a fixed set
    assert problem_key(run, 1000) != problem_key({**untrained, "shots": 1}, 1000)
    generated = {**run, "task": "reasoning-gym:basic_arithmetic"}
    assert problem_key(generated, 500) != problem_key({**generated, "seed": 1}, 500)

    assert not seeded({"task": "jsonl:results/study3/test-problems.jsonl", "temperature": 0.0})
    assert not seeded({"task": "gsm8k", "temperature": 0.0})
    assert seeded({"task": "reasoning-gym:basic_arithmetic", "temperature": 0.0})  # the seed draws the problems
    assert seeded({"task": "gsm8k", "temperature": 1.0})  # the seed draws the samples
    assert seeded({"task": None, "temperature": None})  # not recorded: keep the seed


def test_the_report_loads_no_torch_or_transformers(sweep, tmp_path):
    """`memoryr report` ends every sweep: importing trl, transformers and torch took ~5 s of its ~10 s."""
    script = ("import sys; from memoryr.cli import main; code = main(sys.argv[1:]); "
              "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules)); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, "report", *map(str, sweep), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "report.md").exists()
    failed = subprocess.run([sys.executable, "-c", script, "report", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)  # an expected error still gets its one line, not a traceback
    assert failed.returncode == 2 and failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr


def test_the_checkpoint_folder_prefix_is_transformers_own():
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    assert checkpoints_module.PREFIX_CHECKPOINT_DIR == PREFIX_CHECKPOINT_DIR
