"""The embedded zoo: small timm models trained on PlantedShapes, shipped inside the package.

Each entry is a safetensors file and a JSON model card in ``zoo_weights/``. The architectures are
declared here (loading needs them); the training recipe that produces the weights lives in
:mod:`workbench.training.zoo`, above the data layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from workbench._core.registry import Registry
from workbench.models.model import Model

WEIGHTS_DIR = Path(__file__).parent / "zoo_weights"
ZOO_MEAN = (0.5, 0.5, 0.5)
ZOO_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ZooEntry:
    """How a zoo model is built and which PlantedShapes configuration it is trained on."""

    name: str
    arch: str
    arch_kwargs: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    description: str = ""
    recipe: dict = field(default_factory=dict)  # overrides of the training recipe's defaults
    # "conv": the ViT's patchify conv replaced by a small conv stem, same token grid;
    # "stride4": a ResNet at output stride 4 without dilation (stem max-pool removed, layer3 and
    # layer4 at stride 1)
    stem: str = "patch"


_RESNET = "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition, CVPR 2016"

ZOO: Registry[ZooEntry] = Registry("zoo model")
for _zoo_entry, _paper in [
    (
        ZooEntry(
            "resnet_shapes",
            "test_resnet",
            # output_stride 8 keeps an 8x8 map at 64 px, so GradCAM on layer4 is not a 2x2 blur
            {"output_stride": 8},
            {"rule": "shape"},
            "Small CNN (timm test_resnet, output stride 8) classifying the shape of the object.",
        ),
        _RESNET,
    ),
    (
        ZooEntry(
            "resnet_textures",
            "test_resnet",
            {},
            {"rule": "texture"},
            "Small CNN (timm test_resnet at output stride 4 without dilation) classifying the texture"
            " of the object, trained with random occlusions: its evidence lies inside the object mask, the"
            " ground truth of the localization tests.",
            {"occlusion": 0.5, "epochs": 10},
            stem="stride4",
        ),
        _RESNET,
    ),
    (
        ZooEntry(
            "resnet_textures_twin",
            "test_resnet",
            {},
            {"rule": "texture"},
            "The texture CNN's twin: the same architecture and recipe, another seed (weights and training"
            " data). The independent judge of the feature-visualization transfer test (Fel et al., MACO,"
            " NeurIPS 2023): a visualization that only fools the model it was optimized on does not transfer.",
            {"occlusion": 0.5, "epochs": 10, "seed": 1},
            stem="stride4",
        ),
        _RESNET,
    ),
    (
        ZooEntry(
            "vit_shapes",
            "test_vit",
            {"img_size": 64, "patch_size": 8},
            {"rule": "shape"},
            "Small ViT (timm test_vit: 8x8 tokens of 8 px + CLS, 6 blocks, width 64) with a convolutional"
            " patch stem (Xiao et al. 2021); a plain patchify stem stayed near chance for 10 epochs on CPU.",
            {"epochs": 12, "lr": 1e-3},
            stem="conv",
        ),
        "Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021; conv stem: Xiao et al., Early"
        " Convolutions Help Transformers See Better, NeurIPS 2021",
    ),
    (
        ZooEntry(
            "resnet_shape_color",
            "test_resnet",
            {},
            {"rule": "shape_color"},
            "Small CNN (the texture model's stride-4 ResNet, trained with random occlusions) on a disjunctive"
            " rule with known concepts: class 1 iff the object is a circle OR red. The ground truth of the"
            " concept tests: CRAFT should find a 'circle' and a 'red' concept for class 1.",
            {"occlusion": 0.5},
            stem="stride4",
        ),
        _RESNET + "; concept rule: Fel et al., CRAFT, CVPR 2023",
    ),
    (
        ZooEntry(
            "resnet_shapes_shortcut",
            "test_resnet",
            {"output_stride": 8},
            {"rule": "shape", "shortcut": "patch", "shortcut_correlation": 1.0},
            "The CNN trained with a label-coded corner patch always present: it learns the shortcut.",
        ),
        _RESNET + "; shortcut: Geirhos et al., Shortcut Learning in Deep Neural Networks, Nature MI 2020",
    ),
]:
    ZOO.register(_zoo_entry.name, _zoo_entry, paper=_paper)


def build_zoo_net(name: str, num_classes: int) -> nn.Module:
    """The untrained network of a zoo entry (used by loading and by the training recipe)."""
    import timm

    entry = ZOO.get(name)
    net = timm.create_model(entry.arch, pretrained=False, num_classes=num_classes, **entry.arch_kwargs)
    if entry.stem == "conv":
        net.patch_embed.proj = conv_stem(net.patch_embed.proj)
    elif entry.stem == "stride4":
        # Output stride 4 without the dilations of timm's output_stride argument: the last feature
        # map has 16x16 cells at 64 px and a receptive field that is a fraction of the image instead
        # of all of it, so class activation maps can stay on the object.
        net.maxpool = nn.Identity()
        net.layer3[0].conv2.stride = (1, 1)
        net.layer3[0].downsample[0] = nn.Identity()
        net.layer4[0].conv1.stride = (1, 1)
        net.layer4[0].downsample[0] = nn.Identity()
    return net


def conv_stem(patchify: nn.Conv2d) -> nn.Sequential:
    """A ViT stem of stride-2 3x3 convolutions with the same stride and width as ``patchify``.

    "Early Convolutions Help Transformers See Better" (Xiao et al., NeurIPS 2021): replacing the
    patchify convolution by a few small convolutions makes ViTs train faster and more stably,
    while the tokens, the CLS token and everything after the stem stay a standard timm ViT.
    """
    stride = patchify.stride[0]
    n_down = stride.bit_length() - 1
    if 2**n_down != stride or patchify.stride[0] != patchify.stride[1]:
        raise ValueError(f"conv stem needs a square power-of-2 patch size, got stride {patchify.stride}")
    layers, width = [], patchify.in_channels
    for i in range(n_down):
        out = patchify.out_channels // 2 ** (n_down - 1 - i)
        layers += [nn.Conv2d(width, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        width = out
    layers.append(nn.Conv2d(width, patchify.out_channels, 1))
    return nn.Sequential(*layers)


def zoo_card(name: str) -> dict:
    """The model card of a zoo model (empty dict when its weights have not been trained yet)."""
    ZOO.get(name)
    path = WEIGHTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def list_zoo() -> dict[str, dict]:
    """Zoo names with their model cards (data config, accuracy, training command, seed)."""
    return {name: zoo_card(name) or {"description": ZOO[name].description, "trained": False} for name in ZOO}


def load_zoo(name: str) -> Model:
    """Build a zoo model and load its embedded weights (offline)."""
    from safetensors.torch import load_file

    ZOO.get(name)  # unknown names fail here with the list of valid ones
    weights = WEIGHTS_DIR / f"{name}.safetensors"
    card = zoo_card(name)
    if not weights.exists() or not card:
        raise FileNotFoundError(
            f"zoo model {name!r} has no embedded weights at {weights}; train them with `workbench zoo train {name}`"
        )
    net = build_zoo_net(name, num_classes=len(card["labels"]))
    net.load_state_dict(load_file(str(weights)))
    return Model(
        net,
        mean=card.get("mean", ZOO_MEAN),
        std=card.get("std", ZOO_STD),
        input_size=card["input_size"],
        labels=card["labels"],
        spec=f"zoo:{name}",
        card=card,
    )
