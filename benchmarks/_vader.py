"""The VADER sentiment ground truth (Hutto & Gilbert, ICWSM 2014), fetched on demand.

The data ship inside the source archive of ``vaderSentiment`` 3.3.2 on PyPI
(MIT licence), in ``additional_resources/hutto_ICWSM_2014.tar.gz``. The first
call downloads the archive with ``pip download`` and extracts the ground-truth
files under ``benchmarks/_data/`` (git-ignored); later calls read them there.

Each ``*_GroundTruth.txt`` line is ``id <TAB> mean rating (-4..4) <TAB> text``.
Labels are the sign of the rating (1 positive, 0 negative); the few texts rated
exactly 0 are dropped.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "_data" / "vader"
DOMAINS = {
    "movies": "movieReviewSnippets",
    "tweets": "tweets",
    "amazon": "amazonReviewSnippets",
    "nyt": "nytEditorialSnippets",
}
_SDIST = "vaderSentiment-3.3.2.tar.gz"
_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"


def _fetch() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    sdist = DATA / _SDIST
    if not sdist.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary"]
        cmd += [":all:", "vaderSentiment==3.3.2", "-d", str(DATA), "-q"]
        subprocess.run(cmd, check=True)
    with tarfile.open(sdist) as outer:
        inner = outer.extractfile(_INNER).read()
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        for member in tar.getmembers():
            if member.name.endswith("_GroundTruth.txt"):
                (DATA / Path(member.name).name).write_bytes(
                    tar.extractfile(member).read()
                )


def load(domain: str) -> tuple[list[str], np.ndarray]:
    """Texts and binary labels of one domain: movies, tweets, amazon or nyt."""
    path = DATA / f"{DOMAINS[domain]}_GroundTruth.txt"
    if not path.exists():
        _fetch()
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3 or float(parts[1]) == 0:
            continue
        texts.append(parts[2].strip())
        labels.append(int(float(parts[1]) > 0))
    return texts, np.array(labels)
