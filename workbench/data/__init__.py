"""Data: PlantedShapes (ground truth), image folders, sample photos, the ActivationStore and
activation rows per image."""

from workbench.data.activation_rows import ActivationRows
from workbench.data.activation_store import ActivationStore, extract_activations
from workbench.data.images import ImageFolder, load_image, sample_images
from workbench.data.planted import RULES, PlantedShapes, planted_shapes

__all__ = [
    "RULES",
    "ActivationRows",
    "ActivationStore",
    "ImageFolder",
    "PlantedShapes",
    "extract_activations",
    "load_image",
    "planted_shapes",
    "sample_images",
]
