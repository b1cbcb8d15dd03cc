"""Training studies and recipes (the zoo recipe, the k fold models of MeGe/ReCo; later the harmonizer,
1-Lipschitz and shortcut studies)."""

from workbench.training.classifier import evaluate_accuracy, train_classifier
from workbench.training.folds import FoldModels, assign_folds, train_fold_models
from workbench.training.zoo import train_zoo

__all__ = [
    "FoldModels",
    "assign_folds",
    "evaluate_accuracy",
    "train_classifier",
    "train_fold_models",
    "train_zoo",
]
