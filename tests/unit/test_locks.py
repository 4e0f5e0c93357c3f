"""Every dependency pyproject.toml asks for is pinned in the lock file `make setup`
installs: a fresh machine has only what the lock files name."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def pinned(lock: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_every_dependency_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, deps in (
        ("requirements.lock", project["dependencies"]),
        (
            "requirements-dev.lock",
            project["dependencies"] + project["optional-dependencies"]["dev"],
        ),
    ):
        pins = pinned(lock)
        for dep in deps:
            req = Requirement(dep)
            name = re.sub(r"[-_.]+", "-", req.name).lower()
            assert name in pins, f"{req.name} is not pinned in {lock}: run make lock"
            assert req.specifier.contains(pins[name]), (
                f"{lock} pins {name} {pins[name]}, outside {req.specifier}"
            )
