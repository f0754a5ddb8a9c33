"""What a run records about itself: the library versions it ran with, and run.json (config, seed, command, and
each resume: from which checkpoint, when, with which versions).

Training writes run.json and evaluation stamps its results with the same versions, so this sits
below both; it takes the resolved config as a plain dict and knows nothing of how it was parsed.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

LIBRARIES = ("memoryr", "torch", "transformers", "trl", "accelerate", "datasets", "math-verify", "peft")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a run depends on, for the run record."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except Exception:
            found[name] = "not installed"
    return found


def write_run_record(path: Path, config: dict, seed: int, resumes: list[dict] | None = None) -> None:
    """run.json: everything needed to know what this run was (`config`: the resolved recipe, by section), and
    each time it was resumed (`resumes`, appended by `record_resume`)."""
    record = {
        "format_version": 1,
        "config": config,
        "versions": library_versions(),
        "seed": seed,
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumes": resumes or [],
    }
    _write(path, record)


def resume_entry(checkpoint: Path | None) -> dict:
    """One resume for run.json: the checkpoint it continued from (its step and epoch; None: there was none, so the
    run started over), when, with which library versions and command."""
    entry: dict = {"from": None}
    if checkpoint is not None:
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        entry = {"from": Path(checkpoint).name, "step": state["global_step"], "epoch": state["epoch"]}
    return {**entry, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": library_versions(), "command": sys.argv}


def record_resume(path: Path, config: dict, seed: int, entry: dict) -> None:
    """Append a resume to run.json, keeping the record of the run's start; settings that differ from the start's
    are listed in the entry (`changed`). A missing or unreadable run.json becomes a new record holding the entry."""
    try:
        record = json.loads(Path(path).read_text())
        started = record["config"]
    except (OSError, ValueError, KeyError, TypeError):
        write_run_record(path, config, seed, [entry])
        return
    changed = {
        f"{section}.{key}": value
        for section, values in config.items() if isinstance(values, dict)
        for key, value in values.items()
        if key != "resume" and started.get(section, {}).get(key) != json.loads(json.dumps(value, default=str))
    }
    record.setdefault("resumes", []).append({**entry, **({"changed": changed} if changed else {})})
    _write(path, record)


def _write(path: Path, record: dict) -> None:
    from memoryr.checkpoints import replace_text  # here, not at the top: checkpoints loads transformers (torch)

    replace_text(path, json.dumps(record, indent=2, default=str))  # the sweep reads it: never half-written
