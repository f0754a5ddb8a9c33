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
