"""The package's layout holds: no import circle between memoryr's modules, and dependencies point one way.

    cli -> bench -> training -> evaluation -> memory -> tasks -> shared top-level modules

The graph is read from the source with `ast`: every import of a memoryr module, at module level,
inside functions (lazy imports count) and under TYPE_CHECKING alike. Importing a submodule is an
edge to that module only, not to its parent packages (their `__init__`s import nothing at run
time). A child process started with `-m memoryr.cli` is not an import and is not an edge.
That `import memoryr` loads no torch is tested in tests/test_trl_integration.py
(test_import_memoryr_loads_no_heavy_library_until_a_name_is_used).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# top-level modules every part may use
SHARED = {"models", "hardware", "checkpoints", "run_record", "yaml_file", "jsonl_log"}
ALLOWED = {  # part -> the parts it may import (its own included)
    "cli": {"cli", "errors", "bench", "training", "evaluation", "memory", "tasks", *SHARED},
    "errors": {"training", "evaluation", "memory", "tasks", *SHARED},  # the CLI's list of expected errors
    "bench": {"bench", "training", "evaluation", "memory", "tasks", *SHARED},
    "training": {"training", "evaluation", "memory", "tasks", *SHARED},  # train.py evaluates during training
    "evaluation": {"evaluation", "memory", "tasks", *SHARED},  # sweeps start training as child processes
    "memory": {"memory", "tasks", *SHARED},  # a TRL reward callable needs no trainer
    "tasks": {"tasks", *SHARED},
    "api": {"memory", "tasks"},  # memoryr/__init__.py: the public names come from the method and the task
    **{name: SHARED for name in SHARED},
}


def module_name(path: str) -> tuple[str, bool]:
    """'memoryr/training/train.py' -> ('memoryr.training.train', False); a package's __init__ -> (package, True)."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the memoryr modules it imports anywhere in its source, from {path: source} of a package."""
    names = {module_name(path)[0] for path in sources}
    graph = {}
    for path, source in sources.items():
        name, is_package = module_name(path)
        here = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(source, filename=path)):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: `from .x import y` in a module of package `here`
                    package = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    base = f"{package}.{base}" if base else package
                for alias in node.names:  # `from memoryr import models` imports the module memoryr.models
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base)
        graph[name] = {t for t in (_known(t, names) for t in targets) if t is not None and t != name}
    return graph


def _known(target: str, names: set[str]) -> str | None:
    """The module of the package that `target` names (or the longest one it lies in), else None."""
    while target:
        if target in names:
            return target
        target = target.rpartition(".")[0]
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def part(module: str) -> str:
    """The part of the project a module belongs to: its subpackage, or its own name at the top level."""
    parts = module.split(".")
    return "api" if len(parts) == 1 else parts[1]


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes against ALLOWED, and every module of a part ALLOWED does not know."""
    wrong = []
    for module, targets in sorted(graph.items()):
        allowed = ALLOWED.get(part(module))
        if allowed is None:
            wrong.append(f"{module}: part {part(module)!r} is not in ALLOWED; place it in the layout")
            continue
        wrong += [f"{module} -> {t}: {part(module)} may import only {', '.join(sorted(allowed))}"
                  for t in sorted(targets) if part(t) not in allowed]
    return wrong


def package_graph() -> dict[str, set[str]]:
    sources = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in (ROOT / "memoryr").rglob("*.py")}
    return import_graph(sources)


# ---------------------------------------------------------------- the checks can fail


def test_graph_builder_sees_lazy_relative_and_from_package_imports_and_finds_the_old_circle():
    old = {  # before the layout: train.py imported evaluate, which imported train inside a function
        "memoryr/__init__.py": "",
        "memoryr/evaluate.py": "def eval_cli():\n    from memoryr.train import library_versions\n",
        "memoryr/train.py": "from memoryr.evaluate import evaluate\nfrom . import models\n",
        "memoryr/models.py": "import memoryr.hardware as hw\n",
        "memoryr/hardware.py": "from memoryr import errors\n",
    }
    graph = import_graph(old)
    assert graph["memoryr.evaluate"] == {"memoryr.train"}
    assert graph["memoryr.train"] == {"memoryr.evaluate", "memoryr.models"}
    assert graph["memoryr.models"] == {"memoryr.hardware"}
    assert graph["memoryr.hardware"] == {"memoryr"}  # memoryr.errors is not a module here: the package itself
    assert find_cycle(graph) == ["memoryr.evaluate", "memoryr.train", "memoryr.evaluate"]
    del old["memoryr/evaluate.py"]
    assert find_cycle(import_graph(old)) is None


def test_direction_rules_flag_imports_upwards():
    graph = {
        "memoryr.memory.rewards": {"memoryr.training.config", "memoryr.tasks.grading"},
        "memoryr.tasks.data": {"memoryr.memory.episodic"},
        "memoryr.evaluation.evaluate": {"memoryr.training.train", "memoryr.run_record"},
        "memoryr.training.train": {"memoryr.bench.step", "memoryr.evaluation.evaluate"},
        "memoryr.models": {"memoryr.tasks.data"},
        "memoryr.stray": set(),
    }
    assert [v.split(":")[0] for v in violations(graph)] == [
        "memoryr.evaluation.evaluate -> memoryr.training.train",
        "memoryr.memory.rewards -> memoryr.training.config",
        "memoryr.models -> memoryr.tasks.data",
        "memoryr.stray",
        "memoryr.tasks.data -> memoryr.memory.episodic",
        "memoryr.training.train -> memoryr.bench.step",
    ]


# ---------------------------------------------------------------- the package


def test_the_whole_package_is_read():
    graph = package_graph()
    assert {"memoryr", "memoryr.cli", "memoryr.training.train", "memoryr.memory.trl_integration"} <= set(graph)
    assert "memoryr.evaluation.evaluate" in graph["memoryr.training.train"]  # a module-level import
    assert "memoryr.training.train" in graph["memoryr.cli"]  # a function-level one


def test_no_import_circle_between_modules():
    cycle = find_cycle(package_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_dependencies_point_one_way():
    wrong = violations(package_graph())
    assert not wrong, "\n".join(wrong)
