"""The fine-tuning inputs and their batch iteration, under the names the
frozen-prefix cache imports: they live in :mod:`skltransfer.inputs.batches`
and :mod:`skltransfer._inference`."""

from .._inference import map_batches  # noqa: F401
from ..inputs.batches import *  # noqa: F403
