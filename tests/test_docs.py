"""Every Python block of the README and the documentation runs, so none can rot.

The blocks of a page run in one working folder, in page order, as a reader
runs them: a block may use the files an earlier block of its page wrote.
"""

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CODE = {
    page: re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    for page in PAGES
}
BLOCKS = [
    pytest.param(page, i, id=f"{page.relative_to(ROOT)}[{i}]")
    for page, blocks in CODE.items()
    for i in range(len(blocks))
]
# Engines whose recipes the docs show; a block that uses one runs where it is
# installed (the `distributed` and `recipes` extras) and is skipped elsewhere.
OPTIONAL = {"dask", "distributed", "dask_ml", "ray", "pyspark"}


def _missing_engine(code: str) -> str | None:
    imported = set(re.findall(r"^\s*(?:from|import) (\w+)", code, flags=re.M))
    for name in sorted(imported & OPTIONAL):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
    if "pyspark" in imported and shutil.which("java") is None:
        return "Spark needs a Java runtime"
    return None


def _run(code: str) -> None:
    # As a script: blocks guarded by `if __name__ == "__main__":` (as code that
    # starts worker processes must be) run too.
    exec(compile(code, "<docs>", "exec"), {"__name__": "__main__"})


@pytest.fixture(scope="session")
def page_folders(tmp_path_factory):
    """Per page: its working folder and how many of its blocks ran there."""
    return {}


@pytest.mark.parametrize(("page", "index"), BLOCKS)
def test_code_block_runs(page, index, page_folders, tmp_path_factory, monkeypatch):
    blocks = CODE[page]
    missing = _missing_engine(blocks[index])
    if missing:
        pytest.skip(missing)
    if page not in page_folders:
        page_folders[page] = [tmp_path_factory.mktemp(page.stem), 0]
    folder, done = page_folders[page]
    monkeypatch.chdir(folder)
    for earlier in blocks[done:index]:  # what a reader ran before this block
        if not _missing_engine(earlier):
            _run(earlier)
    page_folders[page][1] = index + 1
    _run(blocks[index])
