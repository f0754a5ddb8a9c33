"""Reports over run folders: training-curve plots, the paper's accuracy table, test accuracy, paired
comparisons and collapse flags.

`report(runs, out, thresholds, baseline)` reads each run's run.json, metrics.jsonl and, when present,
the held-out evaluations of its best and last model (eval-best/, eval-last/: results.json and
samples.jsonl) and writes PNG plots (runs of one method share a colour), `report.md` (in-training
eval accuracy "best (last)" in %, mean ± std over seeds, one column per method as in the paper's
Table 1; test accuracy of the best and last models; each method against the baseline, paired by
seed and by problem; per-run collapse flags; each method's training metrics at the start and end)
and `report.json` (the same numbers, machine-readable). Eval rows are metrics.jsonl records with
`eval/accuracy` (a fraction, for the run's eval task) or `eval/<task>/accuracy`, and `eval/split`.
A run's method is run.json's script "method" label when set, else the paper's name for its rewards.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from memoryr.evaluation.compare import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, mcnemar, seed_differences,
                                        seed_problem_ci)
from memoryr.evaluation.evaluate import RESUME_SETTINGS, read_samples, recorded_settings
from memoryr.evaluation.interruptions import describe_resume, interruption_table
from memoryr.jsonl_log import read_log
from memoryr.tasks.rewards import TIE_TOLERANCE

METHODS = ("R1", "Cosine", "Memory-R", "Memory-R+")  # the paper's column order
COLOURS = {"R1": "tab:blue", "Cosine": "tab:orange", "Memory-R": "tab:green", "Memory-R+": "tab:red"}
EXTRA_COLOURS = ("tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")  # rest of tab10
LINESTYLES = ("-", "--", ":", "-.")  # successive seeds of one method
FORMAT_REWARDS = ("strict_format", "soft_format", "xml_count", "int_answer")
CORRECTNESS_KEYS = ("rewards/correctness/mean", "rewards/cosine/mean")  # Cosine runs have no plain correctness reward
CORRECTNESS_STDS = tuple(key.replace("/mean", "/std") for key in CORRECTNESS_KEYS)
_EVAL_KEY = re.compile(r"^eval/(?:(?P<task>.+)/)?(?P<metric>accuracy|parse_rate|split)$")
MODELS = ("best", "last")  # the models a run's held-out test evaluations score (eval-best/, eval-last/)
UNTRAINED = "untrained model"  # the test table's row for the model before training
# results.json settings that fix the problems, prompt and grading: evaluations with equal ones score the same questions
PROBLEM_SETTINGS = tuple(key for key in RESUME_SETTINGS if key != "model_path")
PROMPT_SETTINGS = ("shots", "exemplars", "system_prompt", "prefill", "max_new_tokens", "grading")  # how it asks


@dataclass(frozen=True)
class CollapseThresholds:
    """When a run counts as collapsed; "first" and "last" are the first and last `edge` fraction of its logged steps."""

    edge: float = field(default=0.1, metadata={"help": "fraction of steps that forms the first and last windows"})
    length_drop: float = field(
        default=0.5, metadata={"help": "length collapse when last mean completion length < this x the first"}
    )
    clip_pin: float = field(
        default=0.9, metadata={"help": "length collapse when the last clipped ratio (completions at max length) >= this"}
    )
    format_rise: float = field(
        default=0.25, metadata={"help": "reward-mode collapse needs the summed format rewards to rise by >= this ..."}
    )
    correctness_flat: float = field(
        default=0.05, metadata={"help": "... while correctness (last minus first) changes by <= this"}
    )
    heldout_rise: float = field(
        default=0.05, metadata={"help": "... unless held-out accuracy, measured before training (step 0), rose by >= this"}
    )
    zero_std_high: float = field(
        default=0.9, metadata={"help": "persistent zero advantage when mean frac_groups_tied >= this ..."}
    )
    zero_std_window: float = field(default=0.25, metadata={"help": "... over this last fraction of steps"})
    untrained_drop: float = field(
        default=5.0, metadata={"help": "held-out collapse when the last model's test accuracy is this many points (pp) "
                               "below the untrained model's on the same problems (--untrained)"}
    )

    def __post_init__(self):
        for name in ("edge", "zero_std_window"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"threshold {name} must be a fraction in (0, 1], got {getattr(self, name)}")


@dataclass
class HeldOutEval:
    """A complete `memoryr eval` of one of a run's models: its accuracy and per-problem verdicts."""

    task: str
    split: str
    n: int
    accuracy: float  # pass@1, a fraction
    correct: list[bool] | None  # the first sample's verdict per problem, by index; None without samples.jsonl
    questions: list[str] | None = None  # the problems' questions, by index; None without samples.jsonl
    path: Path | None = None
    problems: tuple = ()  # the PROBLEM_SETTINGS values and n: equal for evaluations of the same questions
    prompt: tuple = ()  # (key, value) of each PROMPT_SETTINGS entry: how the questions were asked and graded


@dataclass
class Run:
    """What a report needs from one run folder."""

    path: Path
    method: str
    seed: int | None
    steps: list[dict]  # training records (those with a loss)
    evals: dict[str, list[dict]]  # eval task -> [{"step", "accuracy", "parse_rate"(, "split")}] in step order
    selection_split: str  # the split of the in-training evals that chose best/
    selection_logged: bool  # whether metrics.jsonl logged it (`eval/split`) or run.json's eval_split stands in
    test: dict[str, HeldOutEval]  # "best"/"last" -> the model's held-out evaluation, when complete


def method_name(reward_funcs: list[str]) -> str:
    """The paper's name for a reward set: Memory-R+, Memory-R, Cosine, else R1."""
    if "memoryr+" in reward_funcs:
        return "Memory-R+"
    if "memoryr" in reward_funcs:
        return "Memory-R"
    if "cosine" in reward_funcs:
        return "Cosine"
    return "R1"


# ---------------------------------------------------------------- reading runs


def load_held_out(folder: Path) -> HeldOutEval | None:
    """A run's eval-best/ or eval-last/ when its results.json is complete, with samples.jsonl's verdicts if there."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{path} is not valid JSON") from None
    if results.get("status") != "complete":
        return None
    n = results["metrics"]["n"]
    records = read_samples(folder / "samples.jsonl")  # {} without the file
    missing = [i for i in range(n) if i not in records]
    if records and missing:
        raise ValueError(f"{folder / 'samples.jsonl'} lacks problems {missing[:5]} of the {n} in results.json")
    settings = recorded_settings(results.get("settings", {}))
    return HeldOutEval(
        task=results["task"],
        split=results["split"],
        n=n,
        accuracy=results["metrics"]["pass@1"],
        correct=[bool(records[i]["correct"][0]) for i in range(n)] if records else None,
        questions=[records[i]["question"] for i in range(n)] if records else None,
        path=folder,
        problems=problem_key(settings, n),
        prompt=tuple((k, settings[k]) for k in PROMPT_SETTINGS),
    )


def problem_key(settings: dict, n: int) -> tuple:
    """The recorded settings that decide an evaluation's problems, prompt and grading, and its n: evaluations with
    equal keys score the same questions the same way. A generator's options (task_size, task_config) count for
    generated tasks only, and the seed only where it draws the problems or the completions (`seeded`)."""
    generated = settings["task"] is None or settings["task"].startswith("reasoning-gym:")
    ignored = ({"task_size", "task_config"} if not generated else set()) | ({"seed"} if not seeded(settings) else set())
    return tuple(json.dumps(settings[k]) for k in PROBLEM_SETTINGS if k not in ignored) + (n,)


def seeded(settings: dict) -> bool:
    """Whether an evaluation's seed decides its problems or completions: generated problems, or sampling. A fixed
    set (gsm8k, jsonl:...) evaluated greedily is the same evaluation at every seed. Unrecorded settings count as
    seeded."""
    task, temperature = settings["task"], settings["temperature"]
    return task is None or temperature is None or task.startswith("reasoning-gym:") or temperature > 0


def load_untrained(folders: list[Path]) -> list[HeldOutEval]:
    """Complete `memoryr eval` outputs of the untrained model, at most one per set of problems (seed, task, split...)."""
    loaded: dict[tuple, HeldOutEval] = {}
    for folder in map(Path, folders):
        held_out = load_held_out(folder)
        if held_out is None:
            raise ValueError(f"{folder} is no complete `memoryr eval` output (results.json with status complete)")
        if held_out.problems in loaded:
            raise ValueError(f"{loaded[held_out.problems].path} and {folder} evaluate the same problems with the same "
                             "settings; give one of them")
        loaded[held_out.problems] = held_out
    return list(loaded.values())


def _tied_from_trl(row: dict) -> float:
    """`frac_groups_tied` of a step logged before memoryr logged it: TRL's `frac_reward_zero_std`, or every
    group when the step's rewards have no spread at all (TRL's float32 test misses ties of weighted sums)."""
    no_spread = row.get("reward_std") is not None and row["reward_std"] < TIE_TOLERANCE
    return 1.0 if no_spread else row["frac_reward_zero_std"]


def _other_only_from_std(row: dict, one_group: bool) -> float | None:
    """`frac_groups_other_rewards_only` of a step logged before memoryr logged it, where it follows: with no spread in
    the step's correctness rewards every group is tied on them, so the groups untied in total were moved by the other
    rewards; with one group a step, a spread means that group is not tied on correctness. Else unknown (None)."""
    spread = next((row[k] for k in CORRECTNESS_STDS if row.get(k) is not None), None)
    if spread is None or row.get("frac_groups_tied") is None:
        return None
    if spread < TIE_TOLERANCE:
        return 1.0 - row["frac_groups_tied"]
    return 0.0 if one_group else None


def load_run(path: Path) -> Run:
    """A run folder's method, seed, training records, eval accuracy series and held-out test evaluations."""
    path = Path(path)
    for name in ("run.json", "metrics.jsonl"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} does not exist; is {path} a memoryr run folder?")
    try:
        config = json.loads((path / "run.json").read_text())["config"]
        reward_funcs = config["script"]["reward_funcs"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path / 'run.json'} is not a memoryr run record (no config.script.reward_funcs)") from None
    rows = read_log(path / "metrics.jsonl")
    steps = [r for r in rows if "loss" in r]
    if not steps:
        raise ValueError(f"{path / 'metrics.jsonl'} has no training steps logged yet")
    training = config.get("training", {})
    one_group = training.get("generation_batch_size") is not None and \
        training.get("generation_batch_size") == training.get("num_generations")
    for row in steps:
        if row.get("frac_groups_tied") is None and row.get("frac_reward_zero_std") is not None:
            row["frac_groups_tied"] = _tied_from_trl(row)
        if row.get("frac_groups_other_rewards_only") is None:
            recovered = _other_only_from_std(row, one_group)
            if recovered is not None:
                row["frac_groups_other_rewards_only"] = recovered
    script = config["script"]
    default_task = script.get("eval_task") or script.get("task", "eval")
    evals: dict[str, dict[int, dict]] = {}
    for row in rows:
        for key, value in row.items():
            match = _EVAL_KEY.match(key)
            if match and value is not None and "step" in row:
                point = evals.setdefault(match["task"] or default_task, {}).setdefault(row["step"], {"step": row["step"]})
                point[match["metric"]] = value
    series = {task: [p for _, p in sorted(points.items()) if "accuracy" in p] for task, points in evals.items()}
    logged = [p["split"] for p in series.get(default_task, []) if "split" in p]
    test = {model: load_held_out(path / f"eval-{model}") for model in MODELS}
    return Run(
        path=path,
        method=script["method"] if script.get("method") is not None else method_name(reward_funcs),
        seed=training.get("seed"),
        steps=steps,
        evals={task: points for task, points in series.items() if points},
        selection_split=logged[-1] if logged else script.get("eval_split") or "test",  # "test": the old default
        selection_logged=bool(logged),
        test={model: held_out for model, held_out in test.items() if held_out is not None},
    )


def ordered_methods(runs: list[Run]) -> list[str]:
    """The runs' methods: the paper's first, in its column order, then any others in first-seen order."""
    seen = list(dict.fromkeys(run.method for run in runs))
    return [m for m in METHODS if m in seen] + [m for m in seen if m not in METHODS]


def method_colours(methods: list[str]) -> dict[str, str]:
    """The paper's colour for each of its methods; other methods take the rest of matplotlib's tab10 cycle in turn."""
    colours = {m: COLOURS[m] for m in methods if m in COLOURS}
    colours.update(zip([m for m in methods if m not in COLOURS], itertools.cycle(EXTRA_COLOURS)))
    return colours


def _series(run: Run, key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in run.steps if r.get(key) is not None]
    return [s for s, _ in points], [v for _, v in points]


def _window_mean(values: list[float], fraction: float, last: bool) -> float:
    n = max(1, round(len(values) * fraction))
    window = values[-n:] if last else values[:n]
    return sum(window) / len(window)


# ---------------------------------------------------------------- collapse flags


def collapse_flags(run: Run, t: CollapseThresholds, untrained: list[HeldOutEval] = ()) -> dict[str, dict]:
    """Length, reward-mode, zero-advantage and held-out collapse: each {"flagged": bool | None, numbers, "why"}."""
    return {
        "length": _length_flag(run, t),
        "reward_mode": _reward_mode_flag(run, t),
        "zero_advantage": _zero_advantage_flag(run, t),
        "held_out": _held_out_flag(run, t, untrained),
    }


def _not_measured(why: str) -> dict:
    return {"flagged": None, "why": why}


def _length_flag(run: Run, t: CollapseThresholds) -> dict:
    _, lengths = _series(run, "completions/mean_length")
    if not lengths:
        return _not_measured("completions/mean_length not logged")
    first, last = _window_mean(lengths, t.edge, last=False), _window_mean(lengths, t.edge, last=True)
    _, clipped = _series(run, "completions/clipped_ratio")
    clipped_last = _window_mean(clipped, t.edge, last=True) if clipped else None
    shrank = last < t.length_drop * first
    pinned = clipped_last is not None and clipped_last >= t.clip_pin
    why = f"mean length {first:.0f} -> {last:.0f} tokens"
    if clipped_last is not None:
        why += f", clipped ratio {clipped_last:.2f}"
    if shrank:
        why += f" (shrank below {t.length_drop} x first)"
    if pinned:
        why += f" (pinned at max length: clipped >= {t.clip_pin})"
    return {
        "flagged": shrank or pinned,
        "first_length": first,
        "last_length": last,
        "last_clipped_ratio": clipped_last,
        "shrank": shrank,
        "pinned": pinned,
        "why": why,
    }


def _reward_mode_flag(run: Run, t: CollapseThresholds) -> dict:
    format_keys = [f"rewards/{name}/mean" for name in FORMAT_REWARDS if _series(run, f"rewards/{name}/mean")[1]]
    signal = next((key for key in CORRECTNESS_KEYS if _series(run, key)[1]), None)
    if not format_keys or signal is None:
        return _not_measured("no format reward logged" if not format_keys else "no correctness reward logged")
    steps = [r for r in run.steps if all(r.get(k) is not None for k in format_keys)]
    totals = [sum(r[k] for k in format_keys) for r in steps]
    format_rise = _window_mean(totals, t.edge, last=True) - _window_mean(totals, t.edge, last=False)
    _, correct = _series(run, signal)
    correctness_change = _window_mean(correct, t.edge, last=True) - _window_mean(correct, t.edge, last=False)
    flagged = format_rise >= t.format_rise and correctness_change <= t.correctness_flat
    why = f"format rewards {format_rise:+.2f}, {signal.split('/')[1]} {correctness_change:+.2f}"
    # a held-out gain over the untrained model outweighs the training samples (one noisy prompt a step)
    gain = _heldout_gain(run)
    if gain is not None:
        before, last = gain
        why += f"; held-out accuracy {100 * before:.1f}% before training -> {100 * last:.1f}% last"
        if flagged and last - before >= t.heldout_rise:
            flagged = False
    return {
        "flagged": flagged,
        "format_rise": format_rise,
        "correctness_change": correctness_change,
        "correctness_key": signal,
        "format_keys": format_keys,
        "why": why,
    }


def _heldout_gain(run: Run) -> tuple[float, float] | None:
    """(accuracy before training, last accuracy) on the run's eval task, when it was measured at step 0."""
    for history in run.evals.values():
        if len(history) > 1 and history[0]["step"] == 0:
            return history[0]["accuracy"], history[-1]["accuracy"]
    return None


def _zero_advantage_flag(run: Run, t: CollapseThresholds) -> dict:
    _, zero_std = _series(run, "frac_groups_tied")
    if not zero_std:
        return _not_measured("frac_groups_tied not logged")
    late = _window_mean(zero_std, t.zero_std_window, last=True)
    why = f"zero-std groups {late:.2f} over the last {t.zero_std_window:.0%} of steps"
    return {"flagged": late >= t.zero_std_high, "late_zero_std": late, "why": why}


def untrained_match(held_out: HeldOutEval, untrained: list[HeldOutEval]) -> HeldOutEval | None:
    """The untrained model's evaluation of the same problems with the same prompt and grading, if given."""
    return next((u for u in untrained if u.problems == held_out.problems), None)


def _held_out_flag(run: Run, t: CollapseThresholds, untrained: list[HeldOutEval]) -> dict:
    """The last model scores well below the untrained model on the same test problems: training destroyed skill."""
    if not untrained:
        return _not_measured("no untrained evaluation given (--untrained)")
    if "last" not in run.test:
        return _not_measured("no test evaluation of the last model (eval-last/)")
    before = untrained_match(run.test["last"], untrained)
    if before is None:
        return _not_measured("no untrained evaluation of this run's test problems and settings")
    change = 100 * (run.test["last"].accuracy - before.accuracy)
    why = f"test {100 * before.accuracy:.1f}% untrained -> {100 * run.test['last'].accuracy:.1f}% last ({change:+.1f} pp)"
    return {"flagged": change <= -t.untrained_drop, "untrained": before.accuracy, "change_pp": change, "why": why}


# ---------------------------------------------------------------- accuracy table


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def accuracy_table(runs: list[Run]) -> dict[str, dict[str, dict]]:
    """Per eval task and method: n runs and mean/std (sample std over seeds) of best and last accuracy in %."""
    table: dict[str, dict[str, dict]] = {}
    for task in sorted({task for run in runs for task in run.evals}):
        for method in ordered_methods(runs):
            points = [run.evals[task] for run in runs if run.method == method and task in run.evals]
            if not points:
                continue
            best_mean, best_std = _mean_std([100 * max(p["accuracy"] for p in series) for series in points])
            last_mean, last_std = _mean_std([100 * series[-1]["accuracy"] for series in points])
            table.setdefault(task, {})[method] = {
                "n": len(points),
                "best_mean": best_mean,
                "best_std": best_std,
                "last_mean": last_mean,
                "last_std": last_std,
            }
    return table


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def format_cell(cell: dict) -> str:
    """'best (last)' as mean ± std in %, with the number of runs."""
    return f"{_pm(cell['best_mean'], cell['best_std'])} ({_pm(cell['last_mean'], cell['last_std'])}), n={cell['n']}"


def eval_splits(runs: list[Run]) -> dict[str, list[str | None]]:
    """Per eval task, the splits its in-training evals logged (`eval/split`); None for runs that did not log it."""
    splits: dict[str, dict] = {}
    for run in runs:
        for task, series in run.evals.items():
            splits.setdefault(task, {}).update(dict.fromkeys(p.get("split") for p in series))
    return {task: list(found) for task, found in sorted(splits.items())}


# ---------------------------------------------------------------- test accuracy and paired comparisons


def _joined(values: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(values))


def held_out_table(runs: list[Run], untrained: list[HeldOutEval] = ()) -> dict[str, dict]:
    """Per method with held-out test evals: task, split, and per model (best, last) n runs, mean/std accuracy in %;
    first, as "untrained model" (one row per prompt), the untrained evaluations of problems some run's test
    evaluation scored."""
    table: dict[str, dict] = {}
    tested = {e.problems for run in runs for e in run.test.values()}
    by_prompt: dict[tuple, list[HeldOutEval]] = {}
    for u in untrained:
        if u.problems in tested:
            by_prompt.setdefault(u.prompt, []).append(u)
    for prompt, matched in by_prompt.items():
        mean, std = _mean_std([100 * u.accuracy for u in matched])
        cell = {"n": len(matched), "mean": mean, "std": std}
        table[_untrained_label(prompt, list(by_prompt))] = {
            "task": _joined(u.task for u in matched), "split": _joined(u.split for u in matched),
            "best": cell, "last": cell}
    for method in ordered_methods(runs):
        evals = [run.test for run in runs if run.method == method and run.test]
        if not evals:
            continue
        cell: dict = {
            "task": _joined(e.task for test in evals for e in test.values()),
            "split": _joined(e.split for test in evals for e in test.values()),
        }
        for model in MODELS:
            values = [100 * test[model].accuracy for test in evals if model in test]
            if values:
                mean, std = _mean_std(values)
                cell[model] = {"n": len(values), "mean": mean, "std": std}
        table[method] = cell
    return table


def _untrained_label(prompt: tuple, prompts: list[tuple]) -> str:
    """The untrained model's row name; with several prompts (e.g. a study's two regimes), the settings that differ."""
    differing = [(key, value) for key, value in prompt if len({dict(p).get(key) for p in prompts}) > 1]
    return UNTRAINED + (f" ({', '.join(f'{key} {value}' for key, value in differing)})" if differing else "")


def _runs_by_seed(runs: list[Run], method: str) -> dict[int, Run]:
    """The method's runs with held-out evals, by seed; two runs of one method and seed cannot be paired."""
    by_seed: dict[int, Run] = {}
    for run in runs:
        if run.method == method and run.test and run.seed is not None:
            if run.seed in by_seed:
                raise ValueError(
                    f"{by_seed[run.seed].path} and {run.path} are both {method} with seed {run.seed}, so runs cannot "
                    "be paired by seed; label the arms apart with the recipe key `method`"
                )
            by_seed[run.seed] = run
    return by_seed


def paired_comparisons(runs: list[Run], baseline: str) -> dict[str, dict[str, dict]]:
    """Per other method with test evaluations at the baseline's seeds: `paired_comparison` against the baseline."""
    found = {method: paired_comparison(runs, method, baseline) for method in ordered_methods(runs) if method != baseline}
    return {method: models for method, models in found.items() if models}


def paired_comparison(runs: list[Run], method: str, baseline: str) -> dict[str, dict]:
    """Per model (best, last) both methods have at shared seeds: test accuracy minus the baseline's per seed, in
    percentage points (mean, 95% bootstrap CIs over seeds and over seeds and problems, wins/ties/losses), and
    McNemar's exact test over the pooled per-problem verdicts."""
    baseline_runs, method_runs = _runs_by_seed(runs, baseline), _runs_by_seed(runs, method)
    comparison: dict[str, dict] = {}
    for model in MODELS:
        ours = {seed: run.test[model] for seed, run in method_runs.items() if model in run.test}
        theirs = {seed: run.test[model] for seed, run in baseline_runs.items() if model in run.test}
        if not ours.keys() & theirs.keys():
            continue
        diffs = seed_differences(
            {seed: 100 * e.accuracy for seed, e in ours.items()},
            {seed: 100 * e.accuracy for seed, e in theirs.items()},
        )
        verdicts = mcnemar(
            {seed: e.correct for seed, e in ours.items() if e.correct is not None},
            {seed: e.correct for seed, e in theirs.items() if e.correct is not None},
        )
        scored = [s for s in diffs.seeds if ours[s].questions is not None and theirs[s].questions is not None]
        for s in scored:
            if ours[s].questions != theirs[s].questions:
                raise ValueError(f"seed {s}: {ours[s].path} and {theirs[s].path} score other problems; paired runs "
                                 "must be evaluated on the same problems")
        both = seed_problem_ci({s: ours[s].correct for s in scored}, {s: theirs[s].correct for s in scored},
                               {s: ours[s].questions for s in scored}) if scored == diffs.seeds else None
        comparison[model] = {
            "seeds": diffs.seeds,
            "differences_pp": diffs.differences,
            "mean_pp": diffs.mean,
            "ci95_pp": list(diffs.ci95) if diffs.ci95 else None,
            "ci95_seeds_problems_pp": list(both) if both else None,  # None: one seed, or no samples.jsonl
            "wins": diffs.wins,
            "ties": diffs.ties,
            "losses": diffs.losses,
            "mcnemar": asdict(verdicts) if verdicts.seeds else None,  # None: no paired seed has samples.jsonl
        }
    return comparison


# ---------------------------------------------------------------- training dynamics

DYNAMICS = (  # (metrics.jsonl key, row name) for the first -> last table
    ("rewards/correctness/mean", "correctness reward"),
    ("rewards/cosine/mean", "cosine reward"),
    ("rewards/strict_format/mean", "strict-format reward"),
    ("completions/mean_length", "completion length (tokens)"),
    ("entropy", "entropy (nats)"),
    ("frac_groups_tied", "groups with zero reward std"),
    ("frac_groups_other_rewards_only", "groups tied on correctness, moved by the other rewards alone"),
    ("memory/success_entries", "success-memory responses"),
    ("memory/failure_entries", "failure-memory responses"),
    ("memory/exploit_raw_mean", "raw exploitation score"),
    ("memory/explore_raw_mean", "raw exploration score"),
    ("memory/exploit_norm_mean", "normalised exploitation score"),
    ("memory/explore_norm_mean", "normalised exploration score"),
    ("memory/exploit_raw_correct_mean", "exploit (raw), correct completions"),
    ("memory/exploit_raw_wrong_mean", "exploit (raw), wrong completions"),
    ("memory/exploit_norm_correct_mean", "exploit (normalised), correct completions"),
    ("memory/exploit_norm_wrong_mean", "exploit (normalised), wrong completions"),
    ("memory/explore_raw_correct_mean", "explore (raw), correct completions"),
    ("memory/explore_raw_wrong_mean", "explore (raw), wrong completions"),
    ("memory/explore_norm_correct_mean", "explore (normalised), correct completions"),
    ("memory/explore_norm_wrong_mean", "explore (normalised), wrong completions"),
    ("frac_groups_with_correct", "groups with at least one correct completion"),
    ("memory/rank_corr_correct_mixed", "memory reward's rank correlation with correctness, mixed groups"),
    ("advantage/mixed/share", "share of the advantages' magnitude: mixed groups"),
    ("advantage/all_wrong/share", "share of the advantages' magnitude: all-wrong groups"),
    ("advantage/all_right/share", "share of the advantages' magnitude: all-right groups"),
    ("advantage/mixed/correctness", "correctness's share of the advantages, mixed groups"),
    ("advantage/mixed/memoryr+", "Memory-R+ reward's share of the advantages, mixed groups"),
    ("advantage/all_wrong/memoryr+", "Memory-R+ reward's share of the advantages, all-wrong groups"),
    ("advantage/all_right/memoryr+", "Memory-R+ reward's share of the advantages, all-right groups"),
)


def dynamics_table(runs: list[Run], edge: float) -> dict[str, dict[str, dict]]:
    """Per metric and method: mean over runs of each run's first- and last-`edge`-window means, and n runs."""
    table: dict[str, dict[str, dict]] = {}
    for key, _ in DYNAMICS:
        for method in ordered_methods(runs):
            series = [_series(run, key)[1] for run in runs if run.method == method]
            series = [values for values in series if values]
            if series:
                table.setdefault(key, {})[method] = {
                    "n": len(series),
                    "first": statistics.fmean(_window_mean(v, edge, last=False) for v in series),
                    "last": statistics.fmean(_window_mean(v, edge, last=True) for v in series),
                }
    return table


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2f}"


# ---------------------------------------------------------------- plots


def _label(run: Run) -> str:
    return f"{run.method} seed {run.seed}" if run.seed is not None else f"{run.method} ({run.path.name})"


def _styles(runs: list[Run]) -> list[dict]:
    """Colour by method, line style by the run's rank within its method."""
    colours = method_colours(ordered_methods(runs))
    seen: dict[str, int] = {}
    styles = []
    for run in runs:
        rank = seen.get(run.method, 0)
        seen[run.method] = rank + 1
        linestyle = LINESTYLES[rank % len(LINESTYLES)]
        styles.append({"color": colours[run.method], "linestyle": linestyle, "label": _label(run)})
    return styles


def _plot_grid(out: Path, panels: list[tuple[str, list[tuple[list, list, dict]]]], title: str) -> Path:
    """One PNG of subplots; a panel is (title, [(steps, values, line style)])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, lines) in zip(axes.flat, panels):
        for steps, values, style in lines:
            ax.plot(steps, values, linewidth=1.2, **style)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    legend = {}  # label -> handle, over all panels: a run may be missing from the first
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(
        legend.values(), legend.keys(), loc="upper center", ncol=min(4, len(legend)), bbox_to_anchor=(0.5, 1.0), fontsize=9
    )
    fig.suptitle(title, y=1.0 + 0.06 / rows)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.1 / rows))
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _metric_panels(runs: list[Run], styles: list[dict], keys: list[tuple[str, str]]) -> list:
    panels = []
    for key, name in keys:
        lines = [(*_series(run, key), style) for run, style in zip(runs, styles)]
        lines = [line for line in lines if line[0]]
        if lines:
            panels.append((name, lines))
    return panels


def write_plots(runs: list[Run], out: Path) -> list[Path]:
    """rewards.png, correctness.png, length.png, zero_std.png, entropy.png, memory.png (memory runs)
    and (with eval rows) eval.png."""
    styles = _styles(runs)
    reward_keys = sorted({k for run in runs for r in run.steps for k in r if re.fullmatch(r"rewards/.+/mean", k)})
    reward_panels = [(k, k.split("/")[1]) for k in reward_keys] + [("reward", "total reward")]
    figures = {
        "rewards.png": ("Reward components (mean per step)", reward_panels),
        "correctness.png": ("Correctness reward", [("rewards/correctness/mean", "correctness")]),
        "length.png": ("Completion length (tokens)", [(f"completions/{s}_length", s) for s in ("mean", "min", "max")]),
        "zero_std.png": ("Groups with zero reward std (no advantage signal)", [("frac_groups_tied", "fraction")]),
        "entropy.png": ("Policy entropy of the sampled tokens (nats)", [("entropy", "entropy")]),
        "memory.png": ("Episodic memories", [(f"memory/{k}", k) for k in (
            "success_entries", "failure_entries", "exploit_raw_mean", "explore_raw_mean")]),
    }
    written = []
    for name, (title, keys) in figures.items():
        panels = _metric_panels(runs, styles, keys)
        if panels:
            written.append(_plot_grid(out / name, panels, title))
    eval_panels = []
    for task in sorted({task for run in runs for task in run.evals}):
        for metric in ("accuracy", "parse_rate"):
            lines = []
            for run, style in zip(runs, styles):
                points = [p for p in run.evals.get(task, []) if p.get(metric) is not None]
                if points:
                    steps, values = [p["step"] for p in points], [100 * p[metric] for p in points]
                    lines.append((steps, values, {**style, "marker": "o"}))
            if lines:
                eval_panels.append((f"{task} {metric} (%)", lines))
    if eval_panels:
        written.append(_plot_grid(out / "eval.png", eval_panels, "Held-out evaluation"))
    return written


# ---------------------------------------------------------------- report


def _flag_cell(flag: dict) -> str:
    if flag["flagged"] is None:
        return f"n/a ({flag['why']})"
    return f"**yes**: {flag['why']}" if flag["flagged"] else f"no: {flag['why']}"


def _selection_note(runs: list[Run]) -> str:
    """Which split chose each run's best/, and a warning where that is the split it is scored on."""
    tested = [run for run in runs if run.test]
    sources = dict.fromkeys((run.selection_split, run.selection_logged) for run in tested)
    described = "; ".join(
        f"`{split}`" + ("" if logged else " (run.json's eval_split: these runs predate the `eval/split` log key)")
        for split, logged in sources
    )
    note = f"best = the checkpoint with the highest in-training eval accuracy, chosen on the split {described}."
    same = [run for run in tested if "best" in run.test and run.test["best"].split == run.selection_split]
    if same:
        note += (
            f" For {len(same)} of {len(tested)} runs that is the split best is scored on here, so their best accuracy "
            "is biased upwards (chosen on the same split's problems); last is not chosen."
        )
    return note


def _test_lines(runs: list[Run], held_out: dict) -> list[str]:
    """The "Test accuracy" section: best and last model per method, mean ± std over seeds."""
    lines = [
        "## Test accuracy",
        "",
        "Held-out `memoryr eval` of each run's best model (eval-best/) and final model (eval-last/): pass@1 in %, "
        "mean ± sample std over runs (seeds); n = runs. " + _selection_note(runs)
        + (f" The {UNTRAINED} rows: the model before training on the same problems, one evaluation per seed "
           "(or one for all seeds where the problems and greedy completions do not depend on the seed), per prompt."
           if any(row.startswith(UNTRAINED) for row in held_out) else ""),
        "",
        "| method | task | split | best | last |",
        "|---|---|---|---|---|",
    ]
    for method, cell in held_out.items():
        row = [f"{_pm(cell[m]['mean'], cell[m]['std'])}, n={cell[m]['n']}" if m in cell else "-" for m in MODELS]
        lines.append(f"| {method} | {cell['task']} | {cell['split']} | " + " | ".join(row) + " |")
    return lines + [""]


def _paired_lines(runs: list[Run], paired: dict) -> list[str]:
    """The "Paired comparisons" section: each method minus the baseline per seed, and McNemar per problem."""
    base = paired["baseline"]
    lines = [f"## Paired comparisons vs {base}", ""]
    if not any(run.test for run in runs):
        return lines + [
            "No run has held-out test evaluations (eval-best/, eval-last/ with a complete results.json), which the "
            "paired comparisons need; `memoryr sweep` writes them after training.",
            "",
        ]
    if not paired["comparisons"]:
        return lines + [f"No other method has a run with test evaluations at the seed of a {base} run with them.", ""]
    lines += [
        f"Test accuracy minus {base}'s for runs paired by seed (the seeds both have), in percentage points (pp): "
        + COMPARISON_COLUMNS.format(base=base),
        "",
        "| method | model | " + COMPARISON_HEADER,
        "|---|---|" + "---|" * 8,
    ]
    for method, models in paired["comparisons"].items():
        for model, c in models.items():
            lines.append(f"| {method} | {model} | " + _comparison_cells(c))
    return lines + [""]


COMPARISON_COLUMNS = (
    f"the per-seed differences, their mean with a 95% percentile-bootstrap CI over seeds ({BOOTSTRAP_RESAMPLES} "
    f"resamples, seed {BOOTSTRAP_SEED}; none with one seed), the same with the test problems resampled too (crossed "
    "with the seeds: a CI for new seeds and new problems; conservative, since it counts the seed-by-problem noise "
    "twice) and wins/ties/losses over seeds. McNemar's exact test pools the paired runs' per-problem test verdicts "
    "(samples.jsonl): b = {base} right and the method wrong, c = the method right and {base} wrong, p = two-sided "
    "binomial test of c in b + c at 1/2."
)
COMPARISON_HEADER = ("seeds | per seed (pp) | mean (pp) | 95% CI, seeds (pp) | 95% CI, seeds and problems (pp) "
                     "| wins/ties/losses | McNemar b / c of n | p |")


def _comparison_cells(c: dict) -> str:
    """The COMPARISON_HEADER cells of one `paired_comparison` model entry, as a markdown row's end."""
    ci = f"{c['ci95_pp'][0]:+.1f} to {c['ci95_pp'][1]:+.1f}" if c["ci95_pp"] else "n/a (one seed)"
    both = c["ci95_seeds_problems_pp"]
    ci2 = f"{both[0]:+.1f} to {both[1]:+.1f}" if both else "n/a (one seed or no samples.jsonl)"
    test = c["mcnemar"]
    cells = [", ".join(map(str, c["seeds"])), ", ".join(f"{d:+.1f}" for d in c["differences_pp"]),
             f"{c['mean_pp']:+.1f}", ci, ci2, f"{c['wins']}/{c['ties']}/{c['losses']}",
             f"{test['b']} / {test['c']} of {test['n']}" if test else "no samples.jsonl",
             f"{test['p']:.3g}" if test else "-"]
    return " | ".join(cells) + " |"


def _contrast_lines(contrasts: dict[str, dict]) -> list[str]:
    """The "Contrasts" section: each named pair (method minus its own baseline), paired by seed."""
    lines = ["## Contrasts", "",
             "Each contrast is one method's test accuracy minus another's for runs paired by seed, in pp: "
             + COMPARISON_COLUMNS.format(base="the second method"), "",
             "| contrast | method - baseline | model | " + COMPARISON_HEADER, "|---|---|---|" + "---|" * 8]
    for name, contrast in contrasts.items():
        pair = f"{contrast['method']} - {contrast['baseline']}"
        if not contrast["models"]:
            lines.append(f"| {name} | {pair} | - | no seed with test evaluations of both |" + " |" * 7)
        for model, c in contrast["models"].items():
            lines.append(f"| {name} | {pair} | {model} | " + _comparison_cells(c))
    return lines + [""]


def _markdown(runs: list[Run], record: dict, plots: list[Path], t: CollapseThresholds) -> str:
    lines = ["# memoryr report", "", f"Runs: {len(runs)}", ""]
    lines += [
        "## Eval accuracy",
        "",
        "`eval/accuracy` in %, \"best (last)\" over the evaluations logged during training; "
        "mean ± sample std over runs (seeds); n = runs.",
        "",
    ]
    methods = ordered_methods(runs)
    table = record["accuracy_table_pct"]
    if not table:
        lines.append(
            "No eval accuracy rows (`eval/accuracy`) in any run's metrics.jsonl: evaluation during "
            "training was off or has not run yet."
        )
    else:
        lines += ["| eval task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for task, cells in table.items():
            row = [format_cell(cells[m]) if m in cells else "no eval rows" for m in methods]
            lines.append(f"| {task} | " + " | ".join(row) + " |")
        splits = [
            f"{task}: " + ", ".join(split or "split not recorded" for split in found)
            for task, found in record["eval_splits"].items()
        ]
        lines += ["", "Split of the in-training evals (`eval/split`): " + "; ".join(splits) + "."]
    lines.append("")
    if record["test_accuracy_pct"]:
        lines += _test_lines(runs, record["test_accuracy_pct"])
    if len(methods) > 1:
        lines += _paired_lines(runs, record["paired"])
    if record["contrasts"]:
        lines += _contrast_lines(record["contrasts"])
    lines += [
        "## Collapse flags",
        "",
        f"First/last window: {t.edge:.0%} of logged steps. Length collapse: last mean length < "
        f"{t.length_drop} x first, or last clipped ratio >= {t.clip_pin}. Reward-mode collapse: summed "
        f"format rewards rise >= {t.format_rise} while correctness changes <= {t.correctness_flat:+}, unless "
        f"held-out accuracy measured before training (`eval_at_start`) rose by >= {t.heldout_rise:.2f}. "
        f"Zero advantage: mean frac_groups_tied >= {t.zero_std_high} over the last "
        f"{t.zero_std_window:.0%} of steps. Held-out collapse: the last model's test accuracy is >= "
        f"{t.untrained_drop:g} pp below the untrained model's on the same problems (`--untrained`).",
        "",
        "| run | method | seed | steps | length collapse | reward-mode collapse | zero advantage | held-out collapse |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run, entry in zip(runs, record["runs"]):
        cells = [_flag_cell(entry["flags"][k]) for k in ("length", "reward_mode", "zero_advantage", "held_out")]
        lines.append(f"| {run.path} | {run.method} | {run.seed} | {len(run.steps)} | " + " | ".join(cells) + " |")
    lines += _interruption_lines(runs, record["interruptions"])
    dynamics = record["dynamics"]
    averaged = {m: max((c[m]["n"] for c in dynamics.values() if m in c), default=0) for m in methods}
    lines += [
        "",
        "## Training dynamics",
        "",
        f"First -> last: means over the first and last {t.edge:.0%} of each run's logged steps, averaged over "
        "the method's runs (training samples, not held-out problems). Methods averaged over different numbers of "
        "runs (a sweep still running) are not compared seed for seed; (n=K): a metric only K of the method's runs "
        "logged (added to memoryr after the others ran).",
        "",
        "| metric | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
        "| runs averaged | " + " | ".join(str(averaged[m]) for m in methods) + " |",
    ]
    for key, name in DYNAMICS:
        if key in dynamics:
            cells = [dynamics[key].get(m) for m in methods]
            row = [f"{_number(c['first'])} -> {_number(c['last'])}" + (f" (n={c['n']})" if c["n"] < averaged[m] else "")
                   if c else "-" for c, m in zip(cells, methods)]
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _interruption_lines(runs: list[Run], table: dict[str, dict]) -> list[str]:
    """Every resumed run, from which checkpoint, and every run whose data order differs from its pairs'."""
    listed = [run for run in runs if table[str(run.path)]["resumes"] != [] or table[str(run.path)]["data_order"]]
    lines = ["", "## Interruptions", "",
             "Resumes as run.json records them (`resumes`). Data order: the questions each step trained on "
             "(completions.jsonl), against the runs with the same seed and data settings; a run resumed in a later "
             "epoch by memoryr before it drew each epoch's order from (seed, epoch) replayed the first epoch's order.",
             ""]
    if not listed:
        return lines + ["No run was resumed or trained on another data order than its pairs."]
    lines += ["| run | resumed | data order |", "|---|---|---|"]
    for run in listed:
        entry = table[str(run.path)]
        resumed = "not resumed" if entry["resumes"] == [] else \
            "yes; checkpoint not recorded (run.json from before memoryr recorded resumes)" if entry["resumes"] is None \
            else "; ".join(describe_resume(r) for r in entry["resumes"])
        order = entry["data_order"]
        if order:
            against = "the other runs of its seed" if order["majority"] else "another run of its seed (no majority)"
            cell = (f"**differs** from {against} from step {order['first_step']} ({order['steps_differing']} of "
                    f"{order['steps_compared']} steps): not the run it would have been; rerun it")
        else:
            cell = "same as its seed's other runs" if entry["order_compared"] else "not compared (no other run alike)"
        lines.append(f"| {run.path} | {resumed} | {cell} |")
    return lines


def _best_last(series: list[dict]) -> dict:
    return {"best": max(p["accuracy"] for p in series), "last": series[-1]["accuracy"], "last_step": series[-1]["step"]}


def _held_out_record(held_out: HeldOutEval) -> dict:
    return {"task": held_out.task, "split": held_out.split, "n": held_out.n, "accuracy": held_out.accuracy}


def report(runs: list[Path], out: Path, thresholds: CollapseThresholds, baseline: str | None = None,
           untrained: list[Path] = (), contrasts: dict[str, tuple[str, str]] | None = None) -> Path:
    """Write plots, report.md and report.json for the given run folders into `out`; returns report.md.

    Paired comparisons are against `baseline` (a method name; default: the first method, R1 when present);
    `contrasts` name further (method, baseline) pairs, e.g. a study's pre-registered ones; `untrained` are
    `memoryr eval` folders of the model before training, matched to runs' test evaluations by their problems and
    settings (the held-out collapse flag and the test table's untrained row)."""
    if not runs:
        raise ValueError("no run folders given")
    loaded = [load_run(Path(r)) for r in runs]
    before = load_untrained(untrained)
    methods = ordered_methods(loaded)
    if baseline is not None and baseline not in methods:
        raise ValueError(f"baseline {baseline!r} is none of the methods in these runs: {', '.join(methods)}")
    baseline = baseline or methods[0]
    for name, pair in (contrasts or {}).items():
        unknown = [m for m in pair if m not in methods]
        if unknown:
            raise ValueError(f"contrast {name!r} names no method of these runs: {', '.join(unknown)} "
                             f"(methods: {', '.join(methods)})")
    record = {  # everything is computed before `out` is created: an error leaves no half-written report
        "format_version": 2,
        "thresholds": asdict(thresholds),
        "runs": [
            {
                "run": str(run.path),
                "method": run.method,
                "seed": run.seed,
                "steps": len(run.steps),
                "eval": {task: _best_last(series) for task, series in run.evals.items()},
                "selection_split": run.selection_split,
                "selection_split_logged": run.selection_logged,
                "test": {model: _held_out_record(held_out) for model, held_out in run.test.items()},
                "flags": collapse_flags(run, thresholds, before),
            }
            for run in loaded
        ],
        "untrained": [{"path": str(u.path), **_held_out_record(u)} for u in before],
        "accuracy_table_pct": accuracy_table(loaded),
        "eval_splits": eval_splits(loaded),
        "test_accuracy_pct": held_out_table(loaded, before),
        "paired": {
            "baseline": baseline,
            "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "level": 0.95},
            "comparisons": paired_comparisons(loaded, baseline),
        },
        "contrasts": {name: {"method": m, "baseline": b, "models": paired_comparison(loaded, m, b)}
                      for name, (m, b) in (contrasts or {}).items()},
        "dynamics": dynamics_table(loaded, thresholds.edge),
        "interruptions": interruption_table([run.path for run in loaded]),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(loaded, out)
    record["plots"] = [p.name for p in plots]
    (out / "report.json").write_text(json.dumps(record, indent=2))
    path = out / "report.md"
    path.write_text(_markdown(loaded, record, plots, thresholds))
    return path


def report_cli(argv: list[str]) -> None:
    """`memoryr report RUN [RUN ...] --out DIR [--baseline NAME] [threshold flags]`."""
    parser = argparse.ArgumentParser(
        prog="memoryr report",
        description="Plots, the eval-accuracy table (best (last), mean ± std over seeds per method), test "
        "accuracy, paired comparisons against a baseline method and collapse flags for one or more run folders.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="memoryr run folders")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md, report.json and the PNGs")
    parser.add_argument(
        "--baseline", default=None, metavar="NAME",
        help="method the others are compared with, by seed and by problem (default: the first method, R1 if present)",
    )
    parser.add_argument(
        "--untrained", nargs="+", default=[], type=Path, metavar="EVAL",
        help="`memoryr eval` folders of the untrained model, e.g. one per seed: each run's test evaluation is compared "
        "with the one of the same problems and settings (test table row, held-out collapse flag)",
    )
    parser.add_argument(
        "--contrast", nargs=3, action="append", default=[], metavar=("NAME", "METHOD", "BASELINE"),
        help="a named comparison of METHOD against BASELINE, paired by seed (repeatable), e.g. --contrast content "
        "'Memory-R+ (reference)' 'Memory-R+ (reference), permuted'",
    )
    for f in fields(CollapseThresholds):
        flag = f"--{f.name.replace('_', '-')}"
        parser.add_argument(flag, type=float, default=f.default, help=f"{f.metadata['help']} (default: {f.default})")
    args = parser.parse_args(argv)
    thresholds = CollapseThresholds(**{f.name: getattr(args, f.name) for f in fields(CollapseThresholds)})
    contrasts = {name: (method, base) for name, method, base in args.contrast}
    if len(contrasts) < len(args.contrast):
        raise ValueError("each --contrast needs a name of its own")
    path = report(args.runs, args.out, thresholds, baseline=args.baseline, untrained=args.untrained,
                  contrasts=contrasts)
    print(path.read_text().split("## Plots")[0].rstrip())
    print(f"\nreport: {path}")
