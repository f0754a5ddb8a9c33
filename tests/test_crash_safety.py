"""Crash safety: a run killed hard at each named point of its save cycle, then resumed, ends byte-identical
to an uninterrupted run; checkpoints count only when complete; one writer per run folder."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from memoryr.checkpoints import (CRASH_EXIT_CODE, MARKER, DiskFullError, LinkError, RunLock, RunLockedError,
                                 is_complete, latest_complete_checkpoint, mark_complete, recover, staging, swap_in,
                                 writing)
from memoryr.cli import main
from memoryr.training.train import MemoryrTrainer, _prepare_resume

REPO = Path(__file__).resolve().parents[1]
RUN = ["--config", str(REPO / "recipes" / "gsm8k-memoryrplus-cpu.yaml"), "--model_name_or_path", "tiny-random",
       "--max_completion_length", "8", "--gradient_checkpointing", "false", "--max_steps", "4", "--save_steps", "2",
       "--save_total_limit", "1", "--eval_steps", "2", "--eval_limit", "2", "--eval_batch_size", "2",
       "--memory_explore_warmup", "1", "--disable_tqdm", "true"]
# (crash point, what was being written when the process died)
POINTS = [
    ("after-memory-save@2", "checkpoint-4: memories written, model not yet"),
    ("after-model-save@2", "checkpoint-4: model written, optimizer not yet"),
    ("before-marker@2", "checkpoint-4: everything but the completion marker"),
    ("before-rotation@2", "checkpoint-4 complete, checkpoint-2 not yet rotated away"),
    ("swap-best", "best/ between its two renames"),
    ("inside-final", "final/ half written"),
    ("mid-metrics-append@4", "a torn line in metrics.jsonl (step 3, after checkpoint-2)"),
    ("mid-metrics-append@2", "a torn line in metrics.jsonl before the first checkpoint: the run starts over"),
]
# Epochs of 4 steps (4 training problems, one a step), 3 epochs: kills after checkpoints inside epochs 2 and 3
# and at the boundary between them; resumed, the run must train on the same questions in the same order.
EPOCHS = ["--train_limit", "4", "--max_steps", "12"]
EPOCH_POINTS = [
    ("before-rotation@3", "checkpoint-6 complete: resumed in the middle of epoch 2"),
    ("before-rotation@4", "checkpoint-8 complete: resumed at the start of epoch 3"),
    ("after-model-save@5", "checkpoint-10 half written: resumed from checkpoint-8"),
    ("before-rotation@5", "checkpoint-10 complete: resumed in the middle of epoch 3"),
]


def train_process(out: Path, *extra: str, crash: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("MEMORYR_CRASH_AT", None)
    if crash:
        env["MEMORYR_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "memoryr.cli", "train", *RUN, "--output_dir", str(out), *extra],
                          env=env, capture_output=True, text=True, cwd=REPO)


def finished_state(out: Path) -> dict:
    """What must not depend on a crash: weights, memories, logged rows (timings removed), evals, samples."""
    def untimed(row: dict) -> dict:
        return {k: v for k, v in row.items() if not any(t in k for t in ("time", "seconds", "per_second"))}

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "questions": questions_per_step(out),
        "final": (out / "final" / "model.safetensors").read_bytes(),
        "best": (out / "best" / "model.safetensors").read_bytes(),
        "memory": {p.name: p.read_bytes() for p in sorted((out / "final" / "memory").iterdir())},
        "rows": [untimed(r) for r in rows],  # the end-of-training summary (train_loss) included
        "evals": (out / "evals.json").read_text(),
        "completions": (out / "completions.jsonl").read_text(),
        "checkpoints": sorted(p.name for p in out.glob("checkpoint-*")),
    }


def questions_per_step(out: Path) -> list[str]:
    """The question each step trained on, from the end of the prompts logged in completions.jsonl."""
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    return list({r["step"]: r["prompt_tail"].rsplit("<|im_start|>user", 1)[-1] for r in rows}.values())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("full") / "run"
    done = train_process(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, finished_state(out)


@pytest.fixture(scope="module")
def uninterrupted_epochs(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("epochs") / "run"
    done = train_process(out, *EPOCHS)
    assert done.returncode == 0, done.stderr[-3000:]
    state = finished_state(out)
    epochs = [state["questions"][i:i + 4] for i in (0, 4, 8)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(epochs[2])  # every problem once an epoch
    assert epochs[0] != epochs[1] and epochs[0] != epochs[2]  # so a replayed first epoch would show
    return state


def kill_and_resume(out: Path, point: str, *extra: str) -> subprocess.CompletedProcess:
    """Train until the process dies at `point`, then resume it as the sweep does (`--resume true`)."""
    killed = train_process(out, *extra, crash=point)
    assert killed.returncode == CRASH_EXIT_CODE, f"{point} was never reached: {killed.stderr[-2000:]}"
    assert not is_complete(out / "final")
    resumed = train_process(out, *extra, "--resume", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resumed


@pytest.mark.slow
@pytest.mark.parametrize("point,what", POINTS, ids=[p for p, _ in POINTS])
def test_a_run_killed_at_each_point_resumes_to_the_same_result(tmp_path, uninterrupted, point, what):
    out = tmp_path / "run"
    resumed = kill_and_resume(out, point)
    if point == "mid-metrics-append@4":
        assert "metrics.jsonl: dropped a torn last line" in resumed.stdout
    if point.startswith("before-marker"):
        assert "skipped checkpoint-4: no completion marker" in resumed.stdout
    assert finished_state(out) == uninterrupted[1], what
    (entry,) = json.loads((out / "run.json").read_text())["resumes"]  # the record says what happened
    if entry["from"] is None:  # no complete checkpoint yet
        assert "starting the run over" in resumed.stdout
    else:
        assert f"resuming {out} from {entry['from']}" in resumed.stdout
    if point == "mid-metrics-append@2":
        assert entry["from"] is None


@pytest.mark.slow
@pytest.mark.parametrize("point,what", EPOCH_POINTS, ids=[p for p, _ in EPOCH_POINTS])
def test_a_run_killed_in_a_later_epoch_resumes_on_the_same_questions(tmp_path, uninterrupted_epochs, point, what):
    out = tmp_path / "run"
    resumed = kill_and_resume(out, point, *EPOCHS)
    state = finished_state(out)
    assert state["questions"] == uninterrupted_epochs["questions"], what
    assert state == uninterrupted_epochs, what
    (entry,) = json.loads((out / "run.json").read_text())["resumes"]
    assert entry["from"] in resumed.stdout and entry["epoch"] >= 1


@pytest.mark.slow
def test_resuming_a_finished_run_leaves_it_as_it_is(uninterrupted):
    out, state = uninterrupted
    metrics = (out / "metrics.jsonl").read_bytes()
    again = train_process(out, "--resume", "true")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is finished (final/ is complete): nothing to resume" in again.stdout
    assert (out / "metrics.jsonl").read_bytes() == metrics and finished_state(out) == state
    assert json.loads((out / "run.json").read_text())["resumes"] == []


def test_resume_takes_the_newest_complete_checkpoint(tmp_path):
    for step in (2, 4, 6):
        (tmp_path / f"checkpoint-{step}").mkdir()
    mark_complete(tmp_path / "checkpoint-2", 2)
    mark_complete(tmp_path / "checkpoint-4", 4)
    (tmp_path / "checkpoint-4" / MARKER).write_text("{not json")
    checkpoint, skipped = latest_complete_checkpoint(tmp_path)
    assert checkpoint == tmp_path / "checkpoint-2"
    assert skipped == ["skipped checkpoint-6: no completion marker (the save was interrupted)",
                       f"skipped checkpoint-4: {MARKER} is unreadable"]


def test_a_staged_folder_replaces_the_old_one_whole_and_a_crash_between_renames_is_recovered(tmp_path):
    target = tmp_path / "best"
    target.mkdir()
    (target / "w").write_text("old")
    tmp = staging(target)
    tmp.mkdir()
    (tmp / "w").write_text("new")
    swap_in(target)
    assert (target / "w").read_text() == "new" and not tmp.exists()
    # a crash after the old folder moved aside and before the new one arrived: recover() puts the old one back
    tmp = staging(target)
    tmp.mkdir()
    (tmp / "w").write_text("newer")
    target.rename(tmp_path / ".best.old")
    recover(target)
    assert (target / "w").read_text() == "new" and not tmp.exists() and not (tmp_path / ".best.old").exists()


def test_a_second_writer_on_one_run_folder_is_refused_with_the_holders_pid(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"in use by another memoryr process \\(pid {os.getpid()}\\)"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released on exit
        pass


@pytest.mark.slow
def test_train_on_a_folder_another_trainer_holds_is_one_error_line(tmp_path, data_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint-2").mkdir()
    mark_complete(out / "checkpoint-2", 2)
    with RunLock(out):
        done = train_process(out, "--resume", "true")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: {out} is in use by another memoryr process (pid {os.getpid()})"


def test_staging_swapping_recovery_and_resume_refuse_symlinks_and_never_follow_them(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("not memoryr's")
    run = tmp_path / "run"
    run.mkdir()
    for name, action in ((".final.tmp", staging), ("final", staging), (".final.old", swap_in), (".final.old", recover)):
        link = run / name
        link.symlink_to(elsewhere)
        with pytest.raises(LinkError, match=f"^{link} is a symbolic link: memoryr never deletes or writes through"):
            action(run / "final")
        link.unlink()
    (run / "checkpoint-2").mkdir()
    mark_complete(run / "checkpoint-2", 2)
    (run / "checkpoint-4").symlink_to(elsewhere)  # newer than the checkpoint resumed from: resume would remove it
    with pytest.raises(LinkError, match=f"^{run / 'checkpoint-4'} is a symbolic link"):
        _prepare_resume(run, run / "checkpoint-2", {})
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep"]


def test_running_out_of_space_is_told_by_errno_message_or_free_space(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoint-4"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    safetensors_full = RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                    'message: "No space left on device" })')
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                              "data/0: file write failed")  # says nothing of the disk: the free space tells
    for error in (full, safetensors_full, torch_full):
        monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=2048))
        with pytest.raises(DiskFullError) as caught:
            with writing(folder, needed=lambda: 3 * 10**6):
                raise error
        assert str(caught.value).startswith(f"out of disk space writing {folder}: it needs about 3.0 MB, "
                                            f"2.0 kB are free on {tmp_path}")
    for error in (KeyError("a bug, not the disk"), PermissionError(errno.EACCES, "Permission denied")):
        with pytest.raises(type(error)):  # little space left, but not why the save failed
            with writing(folder, needed=lambda: 3 * 10**6):
                raise error
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=10**12))
    with pytest.raises(RuntimeError, match="file write failed"):  # plenty of space: not a full disk
        with writing(folder, needed=lambda: 3 * 10**6):
            raise torch_full


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_error_line_and_the_run_resumes(tmp_path, monkeypatch, capsys, data_dir):
    out = tmp_path / "run"
    saves = []
    save_optimizer = MemoryrTrainer.__mro__[1]._save_optimizer_and_scheduler

    def disk_full_at_the_second_checkpoint(self, output_dir):
        saves.append(output_dir)
        if len(saves) == 2:  # checkpoint-4: the model is written, its optimizer state does not fit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save_optimizer(self, output_dir)

    monkeypatch.setattr(MemoryrTrainer.__mro__[1], "_save_optimizer_and_scheduler", disk_full_at_the_second_checkpoint)
    assert main(["train", *RUN, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"error: out of disk space writing {out / 'checkpoint-4'}: it needs about ")
    assert " are free on " in errors[0] and "--resume true" in errors[0]
    assert not is_complete(out / "checkpoint-4") and is_complete(out / "checkpoint-2")

    monkeypatch.undo()
    assert main(["train", *RUN, "--output_dir", str(out), "--resume", "true"]) == 0
    assert is_complete(out / "final") and "skipped checkpoint-4: no completion marker" in capsys.readouterr().out
