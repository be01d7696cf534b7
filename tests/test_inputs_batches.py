"""Inputs of fine-tuning behind one interface (inputs/batches.py): every kind
loads the same samples by slice or by positions, and its subsets are its rows."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from skltransfer.backbones import ImagePreprocessing, load_backbone
from skltransfer.exceptions import TruncationWarning
from skltransfer.inputs.batches import (
    CACHED_KEY,
    ImageInputs,
    Inputs,
    MappedInputs,
    TensorInputs,
    TextInputs,
    TokenStateInputs,
    warn_truncated,
)
from skltransfer.inputs.images import as_image_source

CPU = torch.device("cpu")
rng = np.random.default_rng(0)
PIXELS = rng.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
PRE = ImagePreprocessing(crop_size=8, resize_size=None)
TEXTS = np.array(["a", "a good film", "a b c d e f", "the cat", "no", "yes it is"])


def _kinds(tmp_path):
    array = rng.normal(size=(6, 4)).astype(np.float32)
    mapped = np.lib.format.open_memmap(
        tmp_path / "rows.npy", mode="w+", dtype=np.float32, shape=(6, 4)
    )
    mapped[:] = array
    return {
        "tensor": TensorInputs(torch.from_numpy(array)),
        "mapped": MappedInputs(mapped),
        "image": ImageInputs(as_image_source(PIXELS), PRE),
        "text": TextInputs(TEXTS, load_backbone("test_tiny_bert")),
    }


def _same(a, b):
    if isinstance(a, list):
        assert a == b
    else:
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["tensor", "mapped", "image", "text"])
def test_positions_subsets_and_slices_load_the_same_samples(kind, tmp_path):
    inputs = _kinds(tmp_path)[kind]
    assert len(inputs) == 6
    idx = np.array([4, 1, 3])
    by_position = inputs.load(inputs.positions(idx))
    by_subset = inputs.subset(idx).load(slice(0, 3))
    _same(by_position, by_subset)
    every = inputs.load(slice(0, 6))
    _same(inputs.load(slice(1, 2)), every[1:2])


def test_images_are_normalised_after_augmentation_and_can_be_kept_in_memory():
    inputs = ImageInputs(as_image_source(PIXELS), PRE)
    raw = inputs.load(slice(0, 2))
    assert raw.shape == (2, 3, 8, 8) and raw.min() >= 0 and raw.max() <= 1
    seen = []
    batch = inputs.to_model(raw, CPU, augment=lambda b: seen.append(b.max()) or b)
    assert seen[0] <= 1  # augmentation sees [0, 1] pixels
    torch.testing.assert_close(batch, PRE.normalize(raw))
    kept = inputs.materialize()
    assert isinstance(kept, TensorInputs) and kept.kind == "image"
    torch.testing.assert_close(
        kept.to_model(kept.load(slice(0, 6)), CPU),
        inputs.to_model(inputs.load(slice(0, 6)), CPU),
    )


def test_text_lengths_count_tokens_as_batches_cut_them():
    backbone = load_backbone("test_tiny_bert")
    inputs = TextInputs(TEXTS, backbone, max_length=4)
    lengths = inputs.lengths()
    batch = inputs.to_model(inputs.load(slice(0, 6)), CPU)
    np.testing.assert_array_equal(lengths, batch["attention_mask"].sum(1).numpy())
    assert lengths.max() == 4  # the longest texts cut at max_length


def test_token_states_are_cut_to_the_longest_text_of_the_batch():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    states = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2)
    inputs = TokenStateInputs(states, mask)
    batch = inputs.load(np.array([1, 2]))
    assert batch[CACHED_KEY].shape == (2, 2, 2)
    torch.testing.assert_close(batch[CACHED_KEY], states[[1, 2], :2])
    assert torch.equal(batch["attention_mask"], mask[[1, 2], :2])
    assert batch["input_ids"].shape == (2, 2)
    sub = inputs.subset([2, 0])
    assert len(sub) == 2 and torch.equal(sub.mask, mask[[2, 0]])


def _every_kind(tmp_path):
    kinds = _kinds(tmp_path)
    kinds["resized images"] = kinds["image"].materialize()
    states = torch.from_numpy(rng.normal(size=(6, 5, 2)).astype(np.float32))
    mask = (torch.arange(5) < torch.tensor([5, 3, 4, 1, 2, 5])[:, None]).long()
    kinds["token states"] = TokenStateInputs(states, mask)
    return kinds


def test_every_input_kind_implements_the_whole_interface(tmp_path):
    """Tensors, images (decoded per batch or kept in memory), texts and cached
    activations answer every step of Inputs, and subsets keep the samples'
    keys and positions in X."""
    for name, inputs in _every_kind(tmp_path).items():
        assert isinstance(inputs, Inputs), name
        assert inputs.kind in ("tensor", "image", "text"), name
        assert "kind" not in {f.name for f in dataclasses.fields(inputs)}, name
        keys = inputs.sample_keys()
        assert len(keys) == len(inputs) == 6 and len(set(keys)) == 6, name
        np.testing.assert_array_equal(inputs.sample_positions(), np.arange(6))
        part = inputs.subset(np.array([4, 1, 3]))
        assert part.sample_keys() == [keys[4], keys[1], keys[3]], name
        np.testing.assert_array_equal(part.sample_positions(), [4, 1, 3])
        order = inputs.length_order()
        assert order is None or sorted(order.tolist()) == list(range(6)), name
        assert len(inputs.truncated()) == 0, name
        assert not inputs.unread(slice(0, 6)).any(), name
        assert not inputs.unread(np.array([5, 0])).any(), name
        assert isinstance(inputs.batch_size_key(), tuple), name
        assert len(inputs.materialize(batch_size=4).to(CPU)) == 6, name
        batch = inputs.prepare(inputs.positions(np.array([2, 0])))
        _same(
            batch, inputs.to_model(inputs.load(inputs.positions(np.array([2, 0]))), CPU)
        )
        values = inputs.values()
        assert values is None or len(values) == 6, name


def test_truncated_texts_are_named_by_their_position_in_x():
    backbone = load_backbone("test_tiny_bert")
    inputs = TextInputs(TEXTS, backbone, max_length=4)
    np.testing.assert_array_equal(inputs.truncated(), [1, 2, 5])
    part = inputs.subset(np.array([0, 5, 3, 2]))
    np.testing.assert_array_equal(part.truncated(), [5, 2])
    with pytest.warns(TruncationWarning, match=r"^2 of 4 texts .* positions 5, 2 of X"):
        warn_truncated(part, 4)


@pytest.mark.usefixtures("one_thread")
def test_a_fine_tuner_warns_once_about_truncated_texts():
    from skltransfer import FineTuneClassifier

    texts = ["a good film " * 30, "bad", "a bad film", "good " * 80]
    clf = FineTuneClassifier("test_tiny_bert", max_epochs=1, random_state=0)
    with pytest.warns(TruncationWarning) as record:
        clf.fit(texts, [1, 0, 0, 1])
    [warning] = [w for w in record if w.category is TruncationWarning]
    assert "2 of 4 texts" in str(warning.message)
    assert "positions 0, 3 of X" in str(warning.message)


# -- errors name a sample by its position in the user's X -----------------------


def _files_with_an_empty_one(folder, n, empty):
    paths = []
    for i in range(n):
        paths.append(str(folder / f"{i}.png"))
        if i == empty:
            open(paths[-1], "wb").close()
        else:
            Image.fromarray(PIXELS[i % len(PIXELS)]).save(paths[-1])
    return paths


@pytest.mark.usefixtures("one_thread")
def test_image_batches_name_a_sample_by_its_position_in_x(tmp_path):
    """Training batches (positions), the validation split (a subset) and the
    images kept in memory (slices of a subset) all name sample 11."""
    paths = _files_with_an_empty_one(tmp_path, 16, empty=11)
    inputs = ImageInputs(as_image_source(paths), PRE)
    named = r"^Sample 11: Cannot read image file .*11\.png"
    with pytest.raises(ValueError, match=named):
        inputs.load(inputs.positions(np.array([14, 11, 2])))
    part = inputs.subset(np.array([3, 9, 11, 15]))
    with pytest.raises(ValueError, match=named):
        part.load(slice(2, 4))
    with pytest.raises(ValueError, match=named):
        part.load(part.positions(np.array([3, 2])))
    with pytest.raises(ValueError, match=named):
        part.materialize(batch_size=2)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("cache_frozen", [True, False])
def test_a_fine_tuner_names_a_sample_by_its_position_in_x(tmp_path, cache_frozen):
    """Through ``fit``: the frozen-activation pass or the training batches, over
    a training split that is a subset of X, and the validation split."""
    from skltransfer import FineTuneClassifier

    paths = _files_with_an_empty_one(tmp_path, 16, empty=11)
    clf = FineTuneClassifier(
        "test_tiny_cnn",
        head_init="random",
        max_epochs=1,
        batch_size=4,
        early_stopping=True,
        validation_fraction=0.25,
        cache_frozen=cache_frozen,
        random_state=0,
    )
    with pytest.raises(ValueError, match=r"^Sample 11: Cannot read image .*11\.png"):
        clf.fit(paths, np.arange(16) % 2)
