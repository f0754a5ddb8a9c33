"""A sweep's shared test set: none of its runs trains or validates on it, and it is made the same way every time."""

import json
from pathlib import Path

import pytest
import yaml

from memoryr.tasks.data import DataError
from memoryr.training.test_set import disjoint_test_set, seen_questions, write_test_set

REPO = Path(__file__).resolve().parents[1]
STUDY3 = REPO / "sweeps" / "study3.yaml"


@pytest.mark.slow
def test_study3s_test_problems_are_new_to_every_run_and_remade_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the sweep names its recipes relative to the repository
    seen, (task, _) = seen_questions(STUDY3)
    assert task == "reasoning-gym:basic_arithmetic" and len(seen) == 168  # 38 training + 130 validation questions
    committed = REPO / "results" / "study3" / "test-problems.jsonl"
    rows = [json.loads(line) for line in committed.read_text().splitlines()]
    assert len(rows) == 1000 and len({r["question"] for r in rows}) == 1000
    assert not {r["question"] for r in rows} & seen
    write_test_set(tmp_path / "again.jsonl", disjoint_test_set(STUDY3, seed=1000, size=1000))
    assert (tmp_path / "again.jsonl").read_bytes() == committed.read_bytes()


def test_a_test_set_needs_a_generated_task_and_a_positive_size(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="--test-size must be at least 1, got 0"):
        disjoint_test_set(STUDY3, seed=1000, size=0)
    fixed = tmp_path / "gsm8k.yaml"  # a sweep over a fixed set: its test split is the set's own
    fixed.write_text(yaml.safe_dump({"out": str(tmp_path / "runs"), "recipes": ["recipes/gsm8k-r1-cpu.yaml"],
                                     "seeds": [1]}))
    with pytest.raises(DataError, match="drawn from a generated task .*not 'gsm8k'"):
        disjoint_test_set(fixed, seed=1000, size=10)
