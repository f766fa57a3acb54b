"""The public API and the house rules of the layout (docs/design.md): every name resolves,
every public function is documented (numpy-style Parameters and Returns, every parameter,
type hints), importing the package loads no FiftyOne, and the library keeps its rooms."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import alc_fiftyone as alc

LIB = Path(alc.__file__).parent


def _functions():
    return [(n, getattr(alc, n)) for n in alc.__all__ if inspect.isfunction(getattr(alc, n))]


def test_every_public_name_resolves_and_is_listed():
    assert sorted(alc.__all__) == sorted(alc._EXPORTS)
    for name in alc.__all__:
        assert getattr(alc, name) is not None
    with pytest.raises(AttributeError):
        alc.no_such_name  # noqa: B018


@pytest.mark.parametrize("name, fn", _functions(), ids=[n for n, _ in _functions()])
def test_public_functions_are_documented_and_typed(name, fn):
    doc = inspect.getdoc(fn) or ""
    assert "Parameters\n----------" in doc, f"{name}: no Parameters section"
    assert "Returns\n-------" in doc, f"{name}: no Returns section"
    params = doc.split("Parameters\n----------", 1)[1].split("Returns\n-------", 1)[0]
    documented = {
        line.split(" ")[0].lstrip("*") for line in params.splitlines() if line[:1].strip()
    }
    for pname, p in inspect.signature(fn).parameters.items():
        assert pname in documented, f"{name}: parameter {pname!r} is not documented"
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            assert p.annotation is not inspect.Parameter.empty, f"{name}: {pname!r} has no hint"


def test_importing_the_package_and_its_core_loads_no_fiftyone():
    code = (
        "import sys, alc_fiftyone, alc_fiftyone.core.acquisition, alc_fiftyone.core.correction,"
        " alc_fiftyone.core.superpixels, alc_fiftyone.cli\n"
        "print(sorted(m for m in ('fiftyone', 'torch', 'pymongo') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_library_keeps_its_rooms():
    top = sorted(p.name for p in LIB.glob("*.py"))
    assert len(top) <= 8, f"too many modules at the top of alc_fiftyone: {top}"
    rooms = sorted(p.name for p in LIB.iterdir() if (p / "__init__.py").is_file())
    assert rooms == ["core", "data", "models", "review", "steps", "store"]
    long = {
        str(p.relative_to(LIB)): n
        for p in LIB.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 900
    }
    assert not long, f"library files over 900 lines: {long}"
