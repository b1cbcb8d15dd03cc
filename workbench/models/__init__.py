"""Load and wrap models: zoo:, timm:, torchvision:, any nn.Module; split into g / h; hooks."""

from workbench.models.loading import load_model
from workbench.models.model import Model, Normalize
from workbench.models.zoo import ZOO, list_zoo, zoo_card

__all__ = ["ZOO", "Model", "Normalize", "list_zoo", "load_model", "zoo_card"]
