"""Frozen pretrained models as scikit-learn transformers."""
