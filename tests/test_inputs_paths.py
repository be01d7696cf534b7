"""Image paths checked before any is read (inputs/_paths.py)."""

from pathlib import Path

import numpy as np
import pytest

from skltransfer.inputs._paths import check_paths, is_path


def test_paths_in_every_type_are_paths():
    assert is_path("a.png") and is_path(np.str_("a.png")) and is_path(Path("a.png"))
    assert not is_path(b"a.png") and not is_path(np.zeros((2, 2)))


def test_a_path_is_named_by_its_position_among_all_items(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    items = [np.zeros((2, 2)), str(image), np.zeros((2, 2)), str(tmp_path / "b.png")]
    with pytest.raises(ValueError, match=r"^Sample 3: image file .*b\.png' does not"):
        check_paths(items)
    labels = np.array(["w", "x", "y", "z"])
    with pytest.raises(ValueError, match=r"^Sample at position 3 \(index label 'z'\)"):
        check_paths(items, labels)
    with pytest.raises(ValueError, match=r"^Sample 1: .* is a directory"):
        check_paths([str(image), str(tmp_path)])


def test_urls_name_the_sample_by_its_position_and_label(tmp_path):
    items = [np.zeros((2, 2)), "https://example.com/cat.jpg"]
    with pytest.raises(ValueError, match=r"^Sample 1: 'https://.*' is a URL"):
        check_paths(items)
    with pytest.raises(ValueError, match=r"^Sample at position 1 \(index label 8\):"):
        check_paths(items, np.array([7, 8]))
    with pytest.raises(ValueError, match=r"^Sample 0: .* is a file URL: pass its path"):
        check_paths([f"file://{tmp_path}/a.png"])


def test_unreadable_ok_leaves_missing_files_but_never_urls_or_texts(tmp_path):
    missing = [str(tmp_path / "gone.png"), str(tmp_path)]
    check_paths(missing, unreadable_ok=True)  # read later as unreadable images
    with pytest.raises(ValueError, match=r"^Sample 1: 's3://bucket/a.jpg' is a URL"):
        check_paths([missing[0], "s3://bucket/a.jpg"], unreadable_ok=True)
    with pytest.raises(ValueError, match=r"looks like text.*\(sample 1: 'a fine"):
        check_paths([np.zeros(2), "a fine film", "dull"], unreadable_ok=True)
