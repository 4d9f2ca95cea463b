"""Training, evaluation and prediction: ``train``, ``evaluate``, ``predict_video`` and the recipe schema."""

from edgevid.train.engine import train
from edgevid.train.evaluate import evaluate, parse_views
from edgevid.train.predict import predict_video
from edgevid.train.recipe import Recipe, load_recipe, parse_recipe

__all__ = ["Recipe", "evaluate", "load_recipe", "parse_recipe", "parse_views", "predict_video", "train"]
