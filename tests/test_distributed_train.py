"""A real 2-process `accelerate launch` GRPO run on CPU (gloo), with groups straddling the processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_accelerate_run(tmp_path, tiny_model_path, data_dir):
    out = tmp_path / "mp"
    # 2 processes x 6 completions = 3 groups of 4: the middle group is split across the processes.
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "memoryr.cli", "train", "--config", "recipes/gsm8k-memoryrplus-cpu.yaml",
        "--model_name_or_path", "tiny-random", "--max_completion_length", "16", "--gradient_checkpointing", "false",
        "--max_steps", "2", "--per_device_train_batch_size", "6", "--gradient_accumulation_steps", "1",
        "--num_generations", "4",
        "--memory_explore_warmup", "1", "--save_steps", "2", "--output_dir", str(out),
    ]
    env = dict(os.environ, MEMORYR_DATA_DIR=str(data_dir))
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2]
    # every completion of both processes reached the (shared) memory: 12 per step, 3 questions per step
    assert [r["memory/failure_entries"] for r in rows] == [12, 24]
    assert [r["memory/failure_keys"] for r in rows] == [3, 6]
    state = json.loads((out / "checkpoint-2" / "memory" / "memory_state.json").read_text())
    assert state["format_version"] >= 1


def launch_two(out: Path, data_dir: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    """A 2-process run with epochs of 4 steps: one prompt a step, its group of 4 split over the processes."""
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "memoryr.cli", "train", "--config", "recipes/gsm8k-memoryrplus-cpu.yaml",
        "--model_name_or_path", "tiny-random", "--max_completion_length", "8", "--gradient_checkpointing", "false",
        "--train_limit", "4", "--max_steps", "8", "--save_steps", "2", "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1", "--num_generations", "4", "--memory_explore_warmup", "1",
        "--eval_limit", "0", "--disable_tqdm", "true", "--output_dir", str(out), *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k != "MEMORYR_CRASH_AT"}
    env.update(MEMORYR_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1", **({"MEMORYR_CRASH_AT": crash} if crash else {}))
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def questions(out: Path) -> list[str]:
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    return list({r["step"]: r["prompt_tail"] for r in rows}.values())


@pytest.mark.slow
def test_two_process_run_resumed_in_its_second_epoch_trains_on_the_same_questions(tmp_path, tiny_model_path, data_dir):
    full = launch_two(tmp_path / "full", data_dir)
    assert full.returncode == 0, full.stderr[-3000:]
    order = questions(tmp_path / "full")
    assert len(order) == 8 and order[:4] != order[4:]  # a replayed first epoch would show
    out = tmp_path / "resumed"
    killed = launch_two(out, data_dir, crash="before-rotation@3")  # checkpoint-6: the middle of epoch 2
    assert killed.returncode != 0 and not (out / "final").exists()
    resumed = launch_two(out, data_dir, "--resume", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from checkpoint-6" in resumed.stdout
    assert questions(out) == order
    weights = [(run / "final" / "model.safetensors").read_bytes() for run in (tmp_path / "full", out)]
    assert weights[0] == weights[1]
