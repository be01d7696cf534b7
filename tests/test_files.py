"""Local files (_files.py): read with the hash of their bytes, trusted by their
state only once settled, written by rename, told apart from URLs."""

import hashlib
import os

import pytest

from skltransfer import _files


def test_a_reading_hashes_every_byte_and_records_the_state(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(256)) * 5000)
    reading = _files.HashedReading()
    with reading.open(path) as f:
        stream = reading.hashed(f)
        assert stream.read(10) == bytes(range(10))
        stream.read()
    assert reading.hash.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    assert reading.state() == (_files.file_state(os.stat(path)),)


def test_a_file_changed_while_it_is_read_has_no_state(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("before")
    reading = _files.HashedReading()
    with reading.open(path) as f:
        reading.hash.update(f.read())
        with open(path, "a") as g:
            g.write(" and after")
    assert reading.state() is None and not reading.settled()


def test_only_files_changed_well_before_they_were_read_are_settled(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("x")
    state = _files.file_state(os.stat(path))
    changed = max(state[3], state[4])
    assert not _files.settled([state], changed + _files.SETTLE_NS // 2)
    assert _files.settled([state], changed + 2 * _files.SETTLE_NS)


def test_replacing_writes_a_new_file_or_nothing(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    inode = os.stat(path).st_ino
    with pytest.raises(RuntimeError), _files.replacing(str(path)) as f:
        f.write(b"half")
        raise RuntimeError
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]
    with _files.replacing(str(path)) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and os.stat(path).st_ino != inode


@pytest.mark.parametrize(
    "value", ["https://a.org/x.png", "s3://bucket/key", "gs://b/k", "HTTP://A.ORG"]
)
def test_urls_are_errors_that_say_what_to_do(value):
    error = _files.url_error(value, "vectors", "Download it first.")
    assert isinstance(error, ValueError)
    assert str(error) == (
        f"vectors {value!r} is a URL; skltransfer reads local files only. "
        "Download it first."
    )


@pytest.mark.parametrize(
    "value", ["a.png", "/data/a.png", "C://data/a.png", "C:\\a.png", "x:/y", 3]
)
def test_paths_are_no_urls(value):
    assert _files.url_error(value, "vectors", "") is None


def test_a_file_url_names_its_path():
    error = _files.url_error("file:///data/my%20cats/a.png", "Sample 0:", "")
    assert "pass its path, '/data/my cats/a.png'" in str(error)
