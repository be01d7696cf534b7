"""Pooling of layer outputs into one vector per sample (features/_pooling.py)."""

import pytest
import torch

from skltransfer.features._pooling import pool

MAPS = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
TOKENS = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)


def test_feature_maps_pool_over_space():
    torch.testing.assert_close(pool(MAPS, "avg"), MAPS.mean(dim=(2, 3)))
    assert torch.equal(pool(MAPS, "auto"), pool(MAPS, "avg"))
    torch.testing.assert_close(pool(MAPS, "max"), MAPS.amax(dim=(2, 3)))
    both = pool(MAPS, "avgmax")
    assert both.shape == (2, 6)
    assert torch.equal(both[:, 3:], pool(MAPS, "max"))
    assert torch.equal(pool(MAPS, "none"), MAPS.flatten(1))


def test_tokens_pool_over_the_sequence():
    torch.testing.assert_close(pool(TOKENS, "avg"), TOKENS.mean(dim=1))
    torch.testing.assert_close(pool(TOKENS, "max"), TOKENS[:, -1])


def test_vectors_pass_through_and_unknown_modes_fail():
    vectors = torch.ones(2, 5)
    assert pool(vectors, "max") is vectors
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool(MAPS, "median")
