"""Packaging: the LICENSE file matches the declared licence, the build-system can build the
PEP 639 licence string, and the installed dependencies satisfy the declared lower bounds.

The lower bounds themselves were checked by running tests in a virtualenv holding exactly
those versions (README, "Install"): textual 7.5.0 renders every snapshot as 8.2.8 does, 7.0.0
and 6.0.0 do not. This test keeps the declaration and the environment the suite runs in
consistent, and the textual bound at or above the verified one.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _release(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v.split("+")[0])[:3])


def test_license_file_matches_the_declared_licence():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    assert project.get("license-files") == ["LICENSE"]


def test_build_system_understands_a_licence_string():
    # PEP 639 `license = "MIT"` (an SPDX expression) needs setuptools >= 77
    requires = PYPROJECT["build-system"]["requires"]
    setuptools = next(r for r in requires if r.startswith("setuptools"))
    bound = re.fullmatch(r"setuptools>=([\d.]+)", setuptools)
    assert bound and _release(bound.group(1)) >= (77,), setuptools


def test_installed_dependencies_meet_the_declared_lower_bounds():
    for req in PYPROJECT["project"]["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([\d.]+)", req)
        assert m, f"{req}: every dependency needs a lower bound"
        name, low = m.groups()
        assert _release(version(name)) >= _release(low), (name, version(name), low)


def test_textual_bound_is_one_the_snapshots_pass_on():
    textual = next(r for r in PYPROJECT["project"]["dependencies"] if r.startswith("textual"))
    assert _release(textual.split(">=")[1]) >= (7, 5), textual
