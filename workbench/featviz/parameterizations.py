"""How a feature visualization is parameterized: pixels, a 1/f-scaled Fourier spectrum, or MACO's phase.

Each parameterization is a module holding the parameters of K images and returning them, in the model's
pixel space [0, 1], from :meth:`ImageParameterization.forward`. The images are built in a decorrelated
colour space and recorrelated by a 3 x 3 matrix (the square root of the colour covariance of natural
images, computed from local data like the magnitude spectrum: see :func:`color_correlation`), then mapped
to [0, 1] by a sigmoid (or clipped).

- ``"pixel"``: the pixels themselves (what Olah et al. show fails: high frequencies win).
- ``"fourier"``: the spectrum's real and imaginary parts, scaled by 1 / f^decay (Olah, Mordvintsev &
  Schubert, Feature Visualization, Distill 2017), so low frequencies move first.
- ``"maco"``: only the phase; the magnitude is a fixed spectrum of natural images (Fel et al., Unlocking
  Feature Visualization for Deeper Networks with MAgnitude Constrained Optimization, NeurIPS 2023).
  The image keeps a natural energy per frequency whatever the objective asks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench._core.registry import Registry
from workbench._core.validation import check_images, check_int

__all__ = [
    "PARAMETERIZATIONS",
    "FourierImage",
    "ImageParameterization",
    "MacoImage",
    "PixelImage",
    "color_correlation",
    "magnitude_spectrum",
    "resize_spectrum",
]

_OLAH = "Olah, Mordvintsev & Schubert, Feature Visualization, Distill 2017"
_MACO = "Fel et al., Unlocking Feature Visualization for Deeper Networks with MACO, NeurIPS 2023"
VALID_RANGES = ("sigmoid", "clip")


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per image (over channels and pixels)."""
    dims = tuple(range(1, x.ndim))
    x = x - x.mean(dim=dims, keepdim=True)
    return x / (x.std(dim=dims, keepdim=True) + 1e-4)


def color_correlation(images: torch.Tensor) -> torch.Tensor:
    """The square root of the colour covariance of ``images``, normalized: (3, 3).

    ``M = U diag(sqrt(s)) / max column norm`` with ``U diag(s) U^T`` the covariance of the pixels'
    colours; ``M @ z`` turns decorrelated colours ``z`` into correlated ones (Olah et al., Distill 2017,
    computed here from local data instead of ImageNet's constants).

    Parameters
    ----------
    images
        (N, 3, H, W) in [0, 1].
    """
    images = check_images(images, "images", channels=3)
    pixels = images.movedim(1, -1).reshape(-1, 3).double()
    cov = torch.cov(pixels.T)
    s, u = torch.linalg.eigh(cov)
    m = u * s.clamp_min(0).sqrt()
    return (m / m.norm(dim=0).max()).float()


def magnitude_spectrum(
    images: torch.Tensor, size: int | None = None, color: torch.Tensor | None = None
) -> torch.Tensor:
    """The mean Fourier magnitude of a set of images, in decorrelated colours: (3, S, S // 2 + 1).

    MACO's fixed magnitude (Fel et al., NeurIPS 2023). The reference downloads one computed on
    ImageNet; this computes one from any local image set, so a model trained on other data gets the
    spectrum of its own data.

    Parameters
    ----------
    images
        (N, 3, H, W) in [0, 1], square.
    size
        Side S of the spectrum's images (default: the images' own side; others are resized first).
    color
        (3, 3) colour correlation to undo before the transform (default :func:`color_correlation` of
        ``images``), so the spectrum matches images that are recorrelated by the same matrix.
    """
    images = check_images(images, "images", channels=3)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"images: expected square images, got {tuple(images.shape[-2:])}")
    if size is not None:
        size = check_int(size, "size", minimum=4)
        if size != images.shape[-1]:
            images = F.interpolate(
                images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
    color = color_correlation(images) if color is None else color
    total = None
    for chunk in images.split(256):
        z = chunk - chunk.mean(dim=(2, 3), keepdim=True)
        z = torch.einsum("ij,njhw->nihw", torch.linalg.pinv(color), z)  # decorrelate
        mag = torch.fft.rfft2(z.double(), norm="ortho").abs().sum(0)
        total = mag if total is None else total + mag
    return (total / images.shape[0]).float()


def resize_spectrum(magnitude: torch.Tensor, size: int) -> torch.Tensor:
    """A magnitude spectrum (3, S, S // 2 + 1) resampled to another side: (3, size, size // 2 + 1).

    The rows of an rfft are in FFT order (0, 1, ..., -1); they are shifted to put frequency 0 in the
    middle, and each output coefficient reads the input (bilinearly) at its own frequency in cycles per
    pixel, so low and high frequencies are not mixed (the reference interpolates the unshifted array)
    and frequency 0 stays at frequency 0 (an even side's shifted rows run from -S/2 to S/2 - 1, so
    stretching the index range end to end would move it).
    """
    size = check_int(size, "size", minimum=4)
    if magnitude.ndim != 3 or magnitude.shape[-1] != magnitude.shape[-2] // 2 + 1:
        raise ValueError(f"magnitude: expected (C, S, S // 2 + 1), got {tuple(magnitude.shape)}")
    side = magnitude.shape[-2]
    if side == size:
        return magnitude.clone()
    shifted = torch.fft.fftshift(magnitude, dim=-2)  # row i is frequency (i - side // 2) / side
    if side % 2 == 0:  # frequency -1/2 is also +1/2: repeat its row at the end, so +-f stay symmetric
        shifted = torch.cat([shifted, shifted[:, :1]], dim=-2)
    rows = torch.fft.fftshift(torch.fft.fftfreq(size)) * side + side // 2  # fractional input indices
    cols = torch.fft.rfftfreq(size) * side
    grid = torch.stack(
        torch.broadcast_tensors(
            (2 * cols / (shifted.shape[-1] - 1) - 1)[None, :],
            (2 * rows / (shifted.shape[-2] - 1) - 1)[:, None],
        ),
        dim=-1,
    ).to(shifted)
    out = F.grid_sample(
        shifted[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True
    )[0]
    # the total energy grows with the number of pixels under norm="ortho" only through the DC term;
    # the images are standardized after the inverse transform, so the scale does not matter
    return torch.fft.ifftshift(out, dim=-2).clamp_min(0)


def frequency_radius(size: int) -> torch.Tensor:
    """|f| of each coefficient of a (size, size // 2 + 1) rfft, in cycles per pixel."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    return (fx.square() + fy.square()).sqrt()


class ImageParameterization(nn.Module):
    """K images of side ``size`` built from parameters; ``forward()`` returns (K, 3, size, size) in [0, 1].

    Parameters
    ----------
    k, size
        Number of images and their side.
    color
        (3, 3) colour recorrelation (None: identity, the parameters are RGB).
    valid_range
        ``"sigmoid"`` or ``"clip"``: how values reach [0, 1].
    """

    default_lr: float = 0.05
    default_lr_schedule: str = "constant"  # see workbench.featviz.visualization.scheduled_lr

    def __init__(self, k: int, size: int, color: torch.Tensor | None = None, valid_range: str = "sigmoid"):
        super().__init__()
        self.k = check_int(k, "k")
        self.size = check_int(size, "size", minimum=4)
        if valid_range not in VALID_RANGES:
            raise ValueError(f"valid_range: expected one of {VALID_RANGES}, got {valid_range!r}")
        self.valid_range = valid_range
        color = torch.eye(3) if color is None else torch.as_tensor(color, dtype=torch.float32)
        if color.shape != (3, 3):
            raise ValueError(f"color: expected a (3, 3) matrix, got {tuple(color.shape)}")
        self.register_buffer("color", color)

    def decorrelated(self) -> torch.Tensor:  # pragma: no cover - abstract
        """(K, 3, S, S) unbounded, in decorrelated colours."""
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        z = torch.einsum("ij,njhw->nihw", self.color, self.decorrelated())
        if self.valid_range == "sigmoid":
            return torch.sigmoid(z)
        return (z + 0.5).clamp(0, 1)


class PixelImage(ImageParameterization):
    """Pixels as parameters (Olah et al., Distill 2017: the baseline that fills with high frequencies)."""

    default_lr = 0.05

    def __init__(self, k: int, size: int, generator: torch.Generator | None = None, **kwargs):
        super().__init__(k, size, **kwargs)
        # noise of sd 0.5 before the sigmoid, not Lucid's 0.01: from a flat grey image a channel behind a
        # ReLU that is off for grey gets no gradient at all (seen on resnet_textures' layer3)
        self.pixels = nn.Parameter(0.5 * torch.randn(self.k, 3, self.size, self.size, generator=generator))

    def decorrelated(self) -> torch.Tensor:
        return self.pixels


class FourierImage(ImageParameterization):
    """Real and imaginary parts of the spectrum, scaled by ``1 / max(|f|, 1 / S) ** decay``
    (Olah et al., Distill 2017; the image is standardized after the inverse transform, as in Horama).
    """

    default_lr = 0.05

    def __init__(
        self, k: int, size: int, decay: float = 1.0, generator: torch.Generator | None = None, **kwargs
    ):
        super().__init__(k, size, **kwargs)
        shape = (self.k, 3, self.size, self.size // 2 + 1, 2)
        self.spectrum = nn.Parameter(0.01 * torch.randn(shape, generator=generator))
        scale = 1.0 / frequency_radius(self.size).clamp_min(1.0 / self.size) ** float(decay)
        self.register_buffer("scale", scale)

    def decorrelated(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        return _standardize(torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho"))


class MacoImage(ImageParameterization):
    """MACO: only the phase is a parameter; the magnitude is fixed (Fel et al., NeurIPS 2023).

    Parameters
    ----------
    magnitude
        (3, S', S' // 2 + 1) a natural magnitude spectrum (:func:`magnitude_spectrum`), resampled to
        ``size`` when S' differs.
    """

    default_lr = 1.0  # NAdam at lr 1.0 on the phase: the reference's setting
    default_lr_schedule = "cosine"  # decayed to nearly 0 at the end: a constant 1.0 never settles

    def __init__(
        self, k: int, size: int, magnitude: torch.Tensor, generator: torch.Generator | None = None, **kwargs
    ):
        super().__init__(k, size, **kwargs)
        magnitude = resize_spectrum(torch.as_tensor(magnitude, dtype=torch.float32), self.size)
        if magnitude.shape[0] != 3:
            raise ValueError(f"magnitude: expected 3 colour channels, got {magnitude.shape[0]}")
        self.register_buffer("magnitude", magnitude)
        shape = (self.k, 3, self.size, self.size // 2 + 1)
        self.phase = nn.Parameter(torch.randn(shape, generator=generator))

    def decorrelated(self) -> torch.Tensor:
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        return _standardize(torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho"))


class SpectrumImage(ImageParameterization):
    """Images that start as given images: their own spectrum (phase and magnitude) plus a 1/f-scaled
    offset, the parameterization of feature accentuation (Hamblin, Fel et al., Feature Accentuation,
    2024). At the start (offset 0) the images equal the seeds (within the sigmoid's range)."""

    default_lr = 0.05

    def __init__(self, seeds: torch.Tensor, decay: float = 1.0, eps: float = 1e-3, **kwargs):
        seeds = check_images(seeds, "seed_image", channels=3)
        if seeds.shape[-1] != seeds.shape[-2]:
            raise ValueError(f"seed_image: expected square images, got {tuple(seeds.shape[-2:])}")
        super().__init__(seeds.shape[0], seeds.shape[-1], **kwargs)
        if self.valid_range == "sigmoid":
            z = torch.logit(seeds.clamp(eps, 1 - eps))
        else:
            z = seeds - 0.5
        z = torch.einsum("ij,njhw->nihw", torch.linalg.pinv(self.color), z)
        self.register_buffer("seed_spectrum", torch.fft.rfft2(z, norm="ortho"))
        self.offset = nn.Parameter(torch.zeros(*self.seed_spectrum.shape, 2))
        self.register_buffer(
            "scale", 1.0 / frequency_radius(self.size).clamp_min(1.0 / self.size) ** float(decay)
        )

    def decorrelated(self) -> torch.Tensor:
        spectrum = self.seed_spectrum + torch.view_as_complex(self.offset) * self.scale
        return torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")


PARAMETERIZATIONS: Registry[type[ImageParameterization]] = Registry("feature-visualization parameterization")
PARAMETERIZATIONS.register("pixel", PixelImage, paper=_OLAH)
PARAMETERIZATIONS.register("fourier", FourierImage, paper=_OLAH)
PARAMETERIZATIONS.register("maco", MacoImage, paper=_MACO)
PARAMETERIZATIONS.register(
    "spectrum", SpectrumImage, paper="Hamblin, Fel, Saha, Konkle & Alvarez, Feature Accentuation, 2024"
)
