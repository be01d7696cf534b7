"""Turning user inputs (images, texts, arrays) into batches for a backbone.

- :mod:`.images`: image files, PIL images and arrays -> float batches;
- :mod:`.text`: texts -> token batches, and the longest-first order;
- :mod:`.validation`: an estimator's ``X`` and ``y`` checked, and the image
  conventions (preprocessing, value range) learned in ``fit``;
- :mod:`.batches`: the inputs of fine-tuning, one interface for every kind.
"""
