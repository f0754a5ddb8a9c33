"""Resumed runs and runs whose data order differs from their pairs': what the report lists and flags."""

import json
import shutil
from pathlib import Path

from memoryr.evaluation.interruptions import describe_resume, interruption_table, order_divergences, resumes
from memoryr.evaluation.report import CollapseThresholds, report

STUDY2 = Path(__file__).resolve().parents[1] / "results" / "study2" / "report" / "runs"
REPLAYED = STUDY2.parents[1] / "replayed"  # the three runs the reruns replaced, as they were
RERUN = ("study2-r1-seed4", "study2-r1-reweighted-seed5", "study2-r1-reweighted-seed8")


def test_a_run_whose_questions_differ_from_its_groups_majority_is_flagged_where_they_start_to_differ():
    same = list("abcdabcd")
    orders = {
        "r1": ("seed1", same), "memory": ("seed1", same), "replayed": ("seed1", list("abcdabdc")),
        "short": ("seed1", list("abcd")),  # runs are compared over the steps every run of the group logged
        "alone": ("seed2", list("dcba")),  # no other run with its settings: nothing to compare with
        "unlogged": ("seed1", []),
    }
    assert order_divergences(orders) == {}  # over the 4 steps "short" logged, all agree
    del orders["short"]
    assert order_divergences(orders) == {
        "replayed": {"first_step": 7, "steps_differing": 2, "steps_compared": 8, "majority": True}}
    two = {"a": ("k", list("ab")), "b": ("k", list("ba"))}  # no majority: both are flagged
    assert set(order_divergences(two)) == {"a", "b"} and not order_divergences(two)["a"]["majority"]
    tie = {"a1": ("k", list("ab")), "a2": ("k", list("ab")), "b1": ("k", list("ba")), "b2": ("k", list("ba"))}
    assert {name: flag["first_step"] for name, flag in order_divergences(tie).items()} == \
        {"a1": 1, "a2": 1, "b1": 1, "b2": 1}  # two against two: each is compared with the other order


def test_resumes_come_from_the_record_or_are_unknown_for_records_from_before_they_were_kept():
    entry = {"from": "checkpoint-40", "step": 40, "epoch": 1.25, "at": "2026-12-06T10:00:00+0000"}
    assert resumes({"resumes": [entry], "config": {"script": {"resume": True}}}) == [entry]
    assert resumes({"resumes": [], "config": {"script": {"resume": False}}}) == []
    assert resumes({"config": {"script": {"resume": True}}}) is None  # resumed, checkpoint not recorded
    assert resumes({"resumes": [], "config": {"script": {"resume": True}}}) == []  # --resume on a new folder
    assert describe_resume(entry) == "checkpoint-40 (step 40, epoch 1.25) on 2026-12-06T10:00:00+0000"
    assert describe_resume({"from": None, "at": "T"}) == "started over (no complete checkpoint) on T"


def test_study2s_three_runs_resumed_in_their_second_epoch_are_flagged_and_only_they(tmp_path):
    """study2-r1 seed 4 and the reweighted control at seeds 5 and 8 resumed from checkpoint-40 before the fix."""
    others = [p for p in sorted(STUDY2.iterdir()) if p.name.endswith(("seed4", "seed5", "seed8"))]
    runs = [p for p in others if p.name not in RERUN] + [REPLAYED / name for name in RERUN]
    table = interruption_table(runs)
    flagged = {Path(name).name: row["data_order"]["first_step"] for name, row in table.items() if row["data_order"]}
    assert flagged == {"study2-r1-seed4": 42, "study2-r1-reweighted-seed5": 41, "study2-r1-reweighted-seed8": 41}
    unknown = sorted(Path(name).name for name, row in table.items() if row["resumes"] is None)
    assert unknown == ["study2-memoryrplus-paper-mode-seed8", "study2-memoryrplus-reference-seed4",
                       "study2-memoryrplus-reference-seed5", "study2-r1-reweighted-seed5",
                       "study2-r1-reweighted-seed8", "study2-r1-seed4", "study2-r1-seed8"]
    # a run with other data settings (here: another number of shots) is not compared with them
    other = tmp_path / "study2-r1-seed4"
    shutil.copytree(REPLAYED / "study2-r1-seed4", other)
    record = json.loads((other / "run.json").read_text())
    record["config"]["script"]["shots"] = 1
    (other / "run.json").write_text(json.dumps(record))
    alone = interruption_table([other, STUDY2 / "study2-r1-seed1"])[str(other)]
    assert alone["data_order"] is None and not alone["order_compared"]
    # their uninterrupted reruns, in study 2's report now, train on their seeds' order; a session's end
    # stopped them once, and the resume with the fixed order kept it
    table = interruption_table(others)
    assert not any(row["data_order"] for row in table.values())
    assert {Path(name).name: [r["from"] for r in row["resumes"]] for name, row in table.items()
            if Path(name).name in RERUN} == {name: ["checkpoint-60"] for name in RERUN}


def test_the_report_lists_the_resumed_runs_and_flags_the_replayed_one(tmp_path):
    runs = [REPLAYED / "study2-r1-seed4", *(STUDY2 / f"{arm}-seed4" for arm in ("study2-memoryrplus-reference",
                                                                                "study2-r1-reweighted"))]
    text = report(runs, tmp_path, CollapseThresholds()).read_text()
    section = text.split("## Interruptions")[1].split("## Training dynamics")[0]
    rows = {line.split(" | ")[0].rsplit("/", 1)[1]: line for line in section.splitlines() if line.startswith("| /")}
    assert sorted(rows) == ["study2-memoryrplus-reference-seed4", "study2-r1-seed4"]  # the control was not resumed
    assert "| yes; checkpoint not recorded" in rows["study2-r1-seed4"]
    assert "**differs** from the other runs of its seed from step 42 (38 of 80 steps)" in rows["study2-r1-seed4"]
    assert "same as its seed's other runs" in rows["study2-memoryrplus-reference-seed4"]
    record = json.loads((tmp_path / "report.json").read_text())["interruptions"]
    assert record[str(runs[0])]["data_order"]["first_step"] == 42
