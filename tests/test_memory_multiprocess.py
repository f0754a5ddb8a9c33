"""Two processes under accelerate hold byte-identical memories and return the one-process rewards."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scripts" / "memory_multiprocess.py"
FILES = ("memory_success.safetensors", "memory_failure.safetensors", "memory_state.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], out: Path) -> None:
    env = dict(os.environ, ACCELERATE_USE_CPU="1", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, *args, str(SCRIPT), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir(), double.mkdir()
    run([], single)
    # accelerate's --cpu launcher starts one process (several need MPI); torchrun's with CPU state works
    run(["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())], double)

    for name in FILES:
        reference = (single / "rank0" / name).read_bytes()
        assert (double / "rank0" / name).read_bytes() == reference, name
        assert (double / "rank1" / name).read_bytes() == reference, name

    expected = json.loads((single / "rank0_rewards.json").read_text())
    rank0 = json.loads((double / "rank0_rewards.json").read_text())
    rank1 = json.loads((double / "rank1_rewards.json").read_text())
    assert [a + b for a, b in zip(rank0, rank1)] == expected
    assert len(expected) == 3 and all(len(step) == 12 for step in expected)
    assert any(r > 0 for step in expected for r in step)
