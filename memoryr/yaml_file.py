"""Reading the project's YAML files (recipes, sweeps, benchmark variants) with one clear error for bad syntax."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml(path: Path) -> object:
    """A YAML file's contents; a syntax error becomes a one-line ValueError naming the file and the place."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        place = getattr(e, "problem_mark", None)
        where = f" (line {place.line + 1}, column {place.column + 1})" if place else ""
        reason = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{path} is not valid YAML{where}: {reason}") from None
