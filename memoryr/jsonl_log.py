"""Reading the JSONL logs memoryr appends to (metrics, completions, eval samples), with one policy for a crash.

A process killed while it appends leaves a torn last line: no newline, not valid JSON. It is
dropped with a warning naming the file (on stdout, as memoryr's other notices). A last line that is
valid JSON but lacks its newline is a whole row whose newline was not yet written, and is kept. Any
other bad line cannot come from a crash mid-append, so it is an error naming file:line rather than a
row quietly lost. Empty lines are skipped. Problem files (`jsonl:PATH` tasks, tasks/data.py) are
input, not logs, and keep their own checks.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path


def read_log(path: Path, fields: Collection[str] = (), error: type[Exception] = ValueError,
             repair: bool = False) -> list[dict]:
    """The rows of a JSONL log (JSON objects holding `fields`); a bad line other than a torn last one raises `error`.

    With `repair` (a writer about to append), the file is made to end with a newline after its last
    row, so that the next line cannot be glued to a torn or unfinished one.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")  # the last: what follows the last newline, b"" in a whole log
    rows, torn = [], False
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:  # not JSON, or bytes cut inside a UTF-8 character
            if line_no < len(lines):
                raise error(f"{path}:{line_no}: not valid JSON; the log is damaged") from None
            print(f"[memoryr] {path}: dropped a torn last line (a crash while it was written)")
            torn = True
            continue
        if not isinstance(row, dict):
            raise error(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
        missing = set(fields) - row.keys()
        if missing:
            raise error(f"{path}:{line_no}: missing {', '.join(sorted(missing))}; the log is damaged")
        rows.append(row)
    if repair and lines[-1].strip():
        with open(path, "ab") as f:
            if torn:
                f.truncate(len(data) - len(lines[-1]))
            else:
                f.write(b"\n")
    return rows
