"""What a run records about itself: the library versions it ran with, and run.json (config, seed, command).

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


def write_run_record(path: Path, config: dict, seed: int) -> None:
    """run.json: everything needed to know what this run was (`config`: the resolved recipe, by section)."""
    from memoryr.checkpoints import replace_text  # here, not at the top: checkpoints loads transformers (torch)

    record = {
        "format_version": 1,
        "config": config,
        "versions": library_versions(),
        "seed": seed,
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    replace_text(path, json.dumps(record, indent=2, default=str))  # the sweep reads it: never half-written
