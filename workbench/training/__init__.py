"""Training studies and recipes (the zoo recipe; later the harmonizer, 1-Lipschitz and shortcut studies)."""

from workbench.training.classifier import evaluate_accuracy, train_classifier
from workbench.training.zoo import train_zoo

__all__ = ["evaluate_accuracy", "train_classifier", "train_zoo"]
