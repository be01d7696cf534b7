"""The Makefile's set-up: every target installs what it needs, whatever ran
before. The README's first commands are ``make demo`` then ``make test``.

The targets run for real against a scratch virtual environment whose
``python`` only records its arguments, so nothing is installed.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# What each target installs: the extras after `pip install -e`.
EXTRAS = {
    "demo": ".[models,demo,engines]",
    "test": ".[models,test,distributed,recipes,engines]",
    "lint": ".[models,test]",
    "venv": ".[models,test]",
}
# The first command each target runs once its environment is ready.
FIRST_COMMAND = {
    "demo": "-m skltransfer.demo",
    "test": "-m ruff check",
    "lint": "-m ruff check",
    "venv": None,
}

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@pytest.fixture
def scratch_venv(tmp_path):
    """A virtual environment whose python appends its arguments to a log."""
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    python = venv / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    python.chmod(0o755)
    return venv, log


def _make(target: str, venv: Path, *extra: str) -> None:
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), target, f"VENV={venv}"]
        + list(extra),
        check=True,
        capture_output=True,
        text=True,
    )


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    "targets",
    [("demo", "test"), ("test", "demo"), ("venv", "test"), ("demo", "lint")],
    ids="-then-".join,
)
def test_each_target_installs_what_it_needs_whatever_ran_before(scratch_venv, targets):
    venv, log = scratch_venv
    for target in targets:
        seen = len(_calls(log))
        _make(target, venv)
        calls = _calls(log)[seen:]
        installs = [c for c in calls if c.startswith("-m pip install --quiet -e")]
        assert installs == [f"-m pip install --quiet -e {EXTRAS[target]}"], calls
        if FIRST_COMMAND[target]:
            first = next(i for i, c in enumerate(calls) if FIRST_COMMAND[target] in c)
            assert calls.index(installs[0]) < first  # installed before it runs


def test_a_target_run_again_installs_nothing(scratch_venv):
    venv, log = scratch_venv
    _make("test", venv)
    seen = len(_calls(log))
    _make("test", venv)
    assert not [c for c in _calls(log)[seen:] if "pip install" in c]


def test_torch_and_venv_choices_reach_the_install(scratch_venv):
    venv, log = scratch_venv
    _make("demo", venv, "TORCH=torch-cpu-build")
    assert "-m pip install --quiet torch-cpu-build" in _calls(log)
