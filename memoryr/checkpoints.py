"""Crash-safe run folders: complete-or-absent checkpoints and models, one writer per run, kill points.

A checkpoint counts only once its completion marker (`memoryr-complete.json`, written last, naming
the step) is there; resume walks `checkpoint-N` newest first and takes the first complete one. A
model folder such as `final/` or `best/` is written under a temporary name (`staging`) and renamed
into place (`swap_in`), so it is either whole or absent. `RunLock` holds an exclusive `flock` on `<run>/.lock` for the life
of a trainer, so a second process on the same folder fails at once with the holder's pid. A symbolic
link where a folder is deleted or staged is refused (`LinkError`), never followed: its target may lie
outside the run folder. `writing(folder, needed)` turns a disk that fills up during a save into one
`DiskFullError` naming the folder, about the space it needs and the space free.
`crash_point(name)` exits the process hard when MEMORYR_CRASH_AT names that point (for the
fault-injection tests; `name@N` crashes the Nth time the point is reached).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX_CHECKPOINT_DIR = "checkpoint"  # transformers.trainer_utils' name, not imported: that import takes ~5 s,
# and `memoryr report` (the last step of every sweep) needs no transformers; tests/test_report.py checks it
MARKER = "memoryr-complete.json"
CRASH_ENV = "MEMORYR_CRASH_AT"
CRASH_EXIT_CODE = 86
_reached: Counter[str] = Counter()


class RunLockedError(FileExistsError):
    """Another live process holds the run folder's lock."""


class LinkError(RuntimeError):
    """A symbolic link where memoryr deletes or stages a folder inside a run folder."""


class DiskFullError(RuntimeError):
    """The disk filled up while a checkpoint or model folder was written."""


def crash_point(name: str) -> None:
    """Exit at once, with no clean-up, when MEMORYR_CRASH_AT is `name` (or `name@N`, the Nth time here)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os._exit(CRASH_EXIT_CODE)


def append_line(path: Path, line: str, point: str) -> None:
    """Append one line to a log; at an armed crash point only half of it is written first (a torn line)."""
    with open(path, "a", encoding="utf-8") as f:
        if os.environ.get(CRASH_ENV, "").partition("@")[0] == point:
            f.write(line[: len(line) // 2])
            f.flush()
            crash_point(point)
            f.write(line[len(line) // 2 :])
            return
        f.write(line)


def replace_text(path: Path, text: str) -> None:
    """Write a small file through a temporary one and a rename, so a crash leaves the old or the new text."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def mark_complete(folder: Path, step: int, **state: float) -> None:
    """Write the completion marker, the last file of a checkpoint or model folder, with any training `state` that
    a resume needs and the checkpoint's other files do not hold."""
    (Path(folder) / MARKER).write_text(json.dumps({"step": step, **state}) + "\n")


def marker_record(folder: Path) -> dict:
    """What a complete folder's marker holds (`step`, and what `mark_complete` was given)."""
    return json.loads((Path(folder) / MARKER).read_text())


def incomplete_reason(folder: Path) -> str | None:
    """Why a checkpoint or model folder does not count (None when it is complete)."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return "no completion marker (the save was interrupted)"
    try:
        json.loads(marker.read_text())["step"]
    except (ValueError, KeyError, TypeError):
        return f"{MARKER} is unreadable"
    return None


def is_complete(folder: Path) -> bool:
    """Whether a checkpoint or model folder was written to the end."""
    return Path(folder).is_dir() and incomplete_reason(folder) is None


def checkpoint_step(folder: Path) -> int:
    """N of a `checkpoint-N` folder."""
    return int(Path(folder).name.rsplit("-", 1)[-1])


def checkpoints(out: Path) -> list[Path]:
    """The run's `checkpoint-N` folders, newest (highest N) first."""
    found = [p for p in Path(out).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    return sorted(found, key=checkpoint_step, reverse=True)


def latest_complete_checkpoint(out: Path) -> tuple[Path | None, list[str]]:
    """The newest complete checkpoint, and a line for each newer one skipped with the reason."""
    skipped = []
    for folder in checkpoints(out):
        reason = incomplete_reason(folder)
        if reason is None:
            return folder, skipped
        skipped.append(f"skipped {folder.name}: {reason}")
    return None, skipped


def refuse_link(path: Path) -> None:
    """Raise LinkError when `path` is a symbolic link: deleting or writing through it would reach its target."""
    if Path(path).is_symlink():
        raise LinkError(f"{path} is a symbolic link: memoryr never deletes or writes through a link inside a run "
                        "folder; put the folder itself there, or remove the link")


def remove_folder(path: Path) -> None:
    """Delete a folder of a run folder when it is there; a symbolic link is refused, never followed."""
    refuse_link(path)
    if Path(path).exists():
        shutil.rmtree(path)


def staging(target: Path) -> Path:
    """An empty temporary folder beside `target` to write it in; `swap_in(target)` then puts it in place."""
    tmp = _swap_paths(target)[1]
    remove_folder(tmp)
    return tmp


def swap_in(target: Path) -> None:
    """Rename the staged folder to `target`, replacing an old one, so `target` is always whole or absent.

    The old folder is moved aside first and removed last; `recover(target)` puts it back if a crash
    fell between the two renames.
    """
    target, tmp, old = _swap_paths(target)
    if target.exists():
        remove_folder(old)
        target.rename(old)
    crash_point(f"swap-{target.name}")
    tmp.rename(target)
    remove_folder(old)


def _swap_paths(target: Path) -> tuple[Path, Path, Path]:
    """`target`, its staged folder and its moved-aside old one, none of them a symbolic link."""
    target = Path(target)
    paths = target, target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    for path in paths:
        refuse_link(path)
    return paths


def recover(target: Path) -> None:
    """Undo what a crash inside `swap_in` left: restore a moved-aside folder, drop a partial one."""
    target, tmp, old = _swap_paths(target)
    if old.exists() and not target.exists():
        old.rename(target)
    remove_folder(old)
    remove_folder(tmp)


@contextmanager
def writing(folder: Path, needed: Callable[[], int]) -> Iterator[None]:
    """Report running out of disk space while writing `folder` as one DiskFullError with `needed()` bytes (an
    estimate) and the bytes free; any other error passes through. The folder is left without its marker."""
    try:
        yield
    except Exception as e:
        where = next(p for p in Path(folder).parents if p.exists())
        try:
            need, free = needed(), shutil.disk_usage(where).free
        except Exception:  # the estimate must not hide the error it explains
            raise e from None
        if not _out_of_space(e, free, need):
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DiskFullError(f"out of disk space writing {folder}: it needs about {_size(need)}, {_size(free)} are "
                            f"free on {where} ({reason}); free some space, then resume with --resume true (or rerun "
                            "the sweep): the incomplete folder is dropped") from None


def _out_of_space(error: Exception, free: int, needed: int) -> bool:
    """Whether a failed save ran out of space: an OSError's ENOSPC, the OS's words in a library's message
    (safetensors), or, for torch.save's RuntimeError, which names no cause, less space free than the save needs."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return "No space left on device" in str(error) or (type(error) is RuntimeError and free < needed)


def _size(n: float) -> str:
    """Bytes in decimal units: 512 B, 2.0 kB, 1.6 GB."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if round(n, 1) < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"


def folder_bytes(folder: Path) -> int:
    """Bytes of the files in a folder and its subfolders (symbolic links not followed)."""
    return sum(os.lstat(os.path.join(root, name)).st_size
               for root, _, names in os.walk(folder) for name in names)


class RunLock:
    """An exclusive lock on a run folder for as long as a trainer writes it (`with RunLock(out): ...`)."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"{self.path.parent} is in use by another memoryr process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock; the file stays (removing it would race a new holder)
            self._fd = None
