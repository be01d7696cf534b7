"""Fine-tuning pretrained backbones as scikit-learn estimators.

:class:`FineTuneClassifier` and :class:`FineTuneRegressor` put a new head on a
backbone (a registered image model, a text encoder, a user's module or a
fitted estimator) and train the head together with the backbone's last
``unfreeze`` layer groups.
"""

from ._estimators import FineTuneClassifier, FineTuneRegressor

__all__ = ["FineTuneClassifier", "FineTuneRegressor"]
