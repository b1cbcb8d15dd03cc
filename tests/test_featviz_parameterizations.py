"""Parameterizations (pixel, Fourier, MACO, the accentuation spectrum), spectra, colours and crops.

What is known, by construction:

- MACO's images are ``standardize(irfft2(m * exp(i phase)))``: before the standardization the rfft
  magnitude is exactly ``m`` and the phase exactly the parameter, on the columns the real inverse
  transform keeps as given (all but column 0 and the Nyquist column, whose two halves it symmetrizes);
  the standardization only removes the DC term and divides by one number per image.
- A cosine grating ``A cos(2 pi (fy y + fx x) / S + phi)`` has, under ``norm="ortho"``, the single rfft
  coefficient of magnitude ``A S / 2`` at (fy, fx) and nothing else, whatever phi.
- ``color_correlation`` is the square root of the colour covariance: ``M M^T = cov / c`` for one c > 0.
- Crops (:mod:`workbench.featviz.transforms`): sides uniform in exactly [low, high]; bilinear sampling
  of an image that is linear in (x, y) is exact, so a crop of a ramp is the ramp at the crop's sample
  positions.
"""

from __future__ import annotations

import math

import pytest
import torch

from workbench.featviz import color_correlation, load_spectrum, magnitude_spectrum
from workbench.featviz.natural_spectra import SPECTRA_DIR, regenerate_spectra
from workbench.featviz.parameterizations import (
    FourierImage,
    MacoImage,
    PixelImage,
    SpectrumImage,
    frequency_radius,
    resize_spectrum,
)
from workbench.featviz.transforms import CropTransform, crop_boxes, random_crops

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def interior_columns(size: int) -> slice:
    """rfft columns whose coefficients irfft2 keeps as given (not column 0, not the Nyquist column)."""
    return slice(1, (size + 1) // 2)


def radial_means(magnitude: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """Mean magnitude (over colours) in ``bins`` equal rings of |f| from 0 to 0.5 cycles per pixel."""
    f = frequency_radius(magnitude.shape[-2])
    ring = (f / 0.5 * bins).long().clamp(max=bins - 1)
    m = magnitude.mean(0)
    return torch.stack([m[ring == b].mean() for b in range(bins)])


# -- MACO ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 48])
def test_maco_images_have_the_fixed_magnitude_and_a_free_phase(size):
    """|rfft2(decorrelated())| = m / std (one number per image) and arg = the phase parameter, exactly
    (float32 round-off: 1e-4 relative), on the interior columns; at size 48 the shipped 64-px magnitude
    is first resampled by resize_spectrum, and the images carry that resampled magnitude."""
    spec = load_spectrum("planted_shapes_64")
    images = MacoImage(3, size, spec["magnitude"], generator=gen(0), color=spec["color"])
    assert [name for name, _ in images.named_parameters()] == ["phase"]  # the magnitude is not trained
    m = resize_spectrum(spec["magnitude"], size)
    assert torch.equal(images.magnitude, m)
    cols = interior_columns(size)
    with torch.no_grad():
        images.phase.add_(torch.randn(images.phase.shape, generator=gen(1)))  # any phase, not just the init
        z = images.decorrelated()
        spectrum = torch.fft.rfft2(z.double(), norm="ortho")[..., cols]
        ratio = spectrum.abs() / m[..., cols].double()
        per_image = ratio.flatten(1).mean(1)
        torch.testing.assert_close(ratio, per_image.view(-1, 1, 1, 1).expand_as(ratio), rtol=1e-4, atol=0)
        phase_error = torch.angle(spectrum * torch.exp(-1j * images.phase[..., cols].double()))
        assert phase_error.abs().max() < 1e-3
        # standardized: zero mean, unit variance per image
        torch.testing.assert_close(z.mean((1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(z.std((1, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)
        # the image is the sigmoid of the recorrelated colours
        expected = torch.sigmoid(torch.einsum("ij,njhw->nihw", spec["color"], z))
        torch.testing.assert_close(images(), expected, rtol=0, atol=1e-6)


def test_pixel_fourier_and_clip_ranges():
    with torch.no_grad():
        pixel = PixelImage(2, 16, generator=gen(0), valid_range="clip")
        pixel.pixels.copy_(torch.linspace(-1, 1, pixel.pixels.numel()).view_as(pixel.pixels))
        torch.testing.assert_close(pixel(), (pixel.pixels + 0.5).clamp(0, 1))
        fourier = FourierImage(2, 16, generator=gen(0))
        z = fourier.decorrelated()
        torch.testing.assert_close(z.mean((1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
        # divided by std + 1e-4, and the initial spectrum is small (std ~0.05): 1 - 2e-3, not 1
        torch.testing.assert_close(z.std((1, 2, 3)), torch.ones(2), atol=1e-2, rtol=0)
        # 1/f scale: low frequencies are multiplied by up to S, the highest by about 1/0.7
        assert fourier.scale[0, 0] == 16 and fourier.scale[8, 8] == pytest.approx(1 / math.hypot(0.5, 0.5))
    with pytest.raises(ValueError, match="valid_range"):
        PixelImage(1, 16, valid_range="tanh")
    with pytest.raises(ValueError, match="color"):
        PixelImage(1, 16, color=torch.eye(4))


def test_spectrum_image_starts_at_its_seeds():
    """The accentuation parameterization: offset 0 gives back the seeds (clamped to [1e-3, 1 - 1e-3] by
    the logit), through the shipped colour matrix and its pseudo-inverse (exact for an invertible M)."""
    seeds = torch.rand(2, 3, 32, 32, generator=gen(0))
    images = SpectrumImage(seeds, color=load_spectrum("planted_shapes_64")["color"])
    with torch.no_grad():
        torch.testing.assert_close(images(), seeds.clamp(1e-3, 1 - 1e-3), rtol=0, atol=2e-5)
    with pytest.raises(ValueError, match="square"):
        SpectrumImage(torch.rand(1, 3, 32, 16))


# -- magnitude_spectrum, resize_spectrum, colour ------------------------------------------------------
def test_magnitude_spectrum_of_gratings_is_their_frequency():
    """Gratings 0.5 + 0.25 cos(2 pi (3 y + 5 x) / 32 + phi_n), random phi per image: in identity
    colours every channel's mean magnitude is 0.25 * 32 / 2 = 4 at (3, 5) and 0 elsewhere (the mean is
    removed first, so the DC term is 0 too); the phase does not change the magnitude."""
    s = 32
    y, x = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    phi = 2 * math.pi * torch.rand(6, 1, 1, 1, generator=gen(0))
    grating = 0.5 + 0.25 * torch.cos(2 * math.pi * (3 * y + 5 * x) / s + phi)
    images = grating.expand(6, 3, s, s).contiguous()
    m = magnitude_spectrum(images, color=torch.eye(3))
    assert m.shape == (3, s, s // 2 + 1)
    expected = torch.zeros_like(m)
    expected[:, 3, 5] = 0.25 * s / 2
    torch.testing.assert_close(m, expected, rtol=0, atol=1e-4)
    # resized to 16 px (antialiased), the grating keeps its frequency in cycles per image: (3, 5)
    small = magnitude_spectrum(images, size=16, color=torch.eye(3))
    assert small.shape == (3, 16, 9)
    assert all(divmod(int(small[c].argmax()), 9) == (3, 5) for c in range(3))
    with pytest.raises(ValueError, match="square"):
        magnitude_spectrum(torch.rand(2, 3, 16, 8))


def test_magnitude_spectrum_decorrelates_colours():
    """With colours mixed across channels, the spectrum is the mean |rfft2| of M^+ (x - mean) with M the
    images' own colour matrix (written out here); float32 vs float64 round-off: 1e-4 relative."""
    base = torch.rand(4, 2, 16, 16, generator=gen(3))
    images = torch.stack([base[:, 0], 0.8 * base[:, 0] + 0.2 * base[:, 1], base[:, 1]], 1)
    color = color_correlation(images)
    z = torch.einsum("ij,njhw->nihw", torch.linalg.pinv(color), images - images.mean((2, 3), keepdim=True))
    expected = torch.fft.rfft2(z.double(), norm="ortho").abs().mean(0).float()
    torch.testing.assert_close(magnitude_spectrum(images), expected, rtol=1e-4, atol=1e-5)


def test_color_correlation_is_a_square_root_of_the_covariance():
    """M M^T = cov / c with c = max column norm^2 of U sqrt(s): the normalization keeps columns <= 1."""
    mix = torch.tensor([[0.2, 0.05, 0.0], [0.15, 0.1, 0.02], [0.1, 0.0, 0.12]])
    z = torch.rand(200, 3, 8, 8, generator=gen(0)) - 0.5
    images = 0.5 + torch.einsum("ij,njhw->nihw", mix, z)  # within [0, 1], so no clipping
    assert images.min() >= 0 and images.max() <= 1
    m = color_correlation(images)
    cov = torch.cov(images.movedim(1, -1).reshape(-1, 3).T.double()).float()
    mmt = m @ m.T
    c = (cov.trace() / mmt.trace()).item()
    torch.testing.assert_close(mmt * c, cov, rtol=1e-4, atol=1e-7)
    assert m.norm(dim=0).max() == pytest.approx(1.0, abs=1e-6)


def one_over_f(side: int, floor: int) -> torch.Tensor:
    """1 / max(|f|, 1 / floor) in cycles per pixel, in every colour: (3, side, side // 2 + 1)."""
    return (1 / frequency_radius(side).clamp_min(1 / floor)).expand(3, -1, -1).contiguous()


@pytest.mark.parametrize(("source", "target"), [(64, 224), (224, 64), (33, 100)])
def test_resize_spectrum_keeps_a_radial_one_over_f_profile(source, target):
    """A 1/f magnitude resampled to another side is 1/f at each output frequency (cycles per pixel),
    within what bilinear interpolation of the coarser grid allows: between two grid frequencies near 0
    the 1/f curve is far from linear (measured worst case 0.88 to 1.12 of 1/f upsampling 64 -> 224,
    0.999 to 1.021 downsampling; before the fix the zero row moved by 1.3 rows and gave 0.78 to 1.43 and
    0.73 to 1.59). Column 0 is symmetric in +-f for a real image's spectrum and must stay so."""
    m = one_over_f(source, source)
    out = resize_spectrum(m, target)
    assert out.shape == (3, target, target // 2 + 1)
    ratio = out / one_over_f(target, source)
    assert 0.85 < ratio.min() and ratio.max() < 1.15
    # low frequencies stay low: ring means decrease from the centre outwards
    rings = radial_means(out)
    assert (rings[1:] < rings[:-1]).all()
    assert out[0].argmax() == 0  # the largest coefficient is still the DC term
    rows = torch.arange(1, (target - 1) // 2 + 1)
    torch.testing.assert_close(out[:, rows, 0], out[:, -rows, 0], rtol=1e-5, atol=0)
    torch.testing.assert_close(resize_spectrum(m, source), m)
    with pytest.raises(ValueError, match="magnitude"):
        resize_spectrum(torch.ones(3, 16, 16), 32)


# -- shipped spectra ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "shape"), [("planted_shapes_64", (3, 64, 33)), ("sample_photos_224", (3, 224, 113))]
)
def test_shipped_spectra_load_and_decrease_with_frequency(name, shape):
    spec = load_spectrum(name)
    assert spec["magnitude"].shape == shape and spec["color"].shape == (3, 3)
    m = spec["magnitude"]
    assert torch.isfinite(m).all() and (m >= 0).all()
    rings = radial_means(m)
    # natural images: energy falls with frequency; on average, ring by ring (allowing 5 % for the
    # PlantedShapes textures, whose stripes add energy at their own frequency)
    assert (rings[1:] < 1.05 * rings[:-1]).all()
    assert rings[0] > 3 * rings[-1]
    assert torch.linalg.matrix_rank(spec["color"]) == 3
    with pytest.raises(KeyError):
        load_spectrum("imagenet")


def same_file(name: str, out_dir) -> None:
    (path,) = regenerate_spectra([name], out_dir=out_dir)
    assert path.read_bytes() == (SPECTRA_DIR / f"{name}.safetensors").read_bytes()


def test_regenerate_planted_shapes_spectrum_reproduces_the_shipped_file(tmp_path):
    """Deterministic down to the bytes (the metadata is a single entry: safetensors writes a metadata
    map in hash order, which changed the bytes between processes when it had two entries)."""
    same_file("planted_shapes_64", tmp_path)


@pytest.mark.slow
def test_regenerate_sample_photos_spectrum_reproduces_the_shipped_file(tmp_path):
    same_file("sample_photos_224", tmp_path)


# -- crops --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [(0.2, 0.25), (0.6, 1.0), (0.4, 0.4)])
def test_crop_sides_cover_exactly_the_stated_range(scale):
    """Sides uniform in exactly [low, high]. The reference toolbox (Horama 0.3.0, ``common.py``) drew
    them in [high, 2 high - low] (its random offset starts at box_size[1]): 0.25-0.30 for 0.20-0.25.

    20,000 draws: the extremes are within 0.2 % of the range of the bounds (the chance that none falls
    in such an end-slice is 0.998^20000 = e^-40); each of 10 bins holds 2,000 +- 45 (binomial sd), so
    +-8 % (3.5 sd) bounds it."""
    low, high = scale
    boxes = crop_boxes(20_000, scale, generator=gen(0))
    sides = boxes.sides
    assert sides.min() >= low and sides.max() <= high
    if high > low:
        assert sides.min() - low < 0.002 * (high - low) and high - sides.max() < 0.002 * (high - low)
        counts = torch.histc(sides, bins=10, min=low, max=high)
        assert (counts - 2000).abs().max() < 160
    # no rotation: every crop lies inside the image
    half = sides / 2
    assert ((boxes.centers - half[:, None]) >= -1e-6).all() and (
        (boxes.centers + half[:, None]) <= 1 + 1e-6
    ).all()
    # centres uniform where they fit: they reach both ends of the room
    if low == high:
        assert boxes.centers.min() < half[0] + 1e-3 and boxes.centers.max() > 1 - half[0] - 1e-3
    assert (boxes.angles == 0).all()


def test_rotated_crops_keep_their_corners_inside_when_they_can():
    """Corners c + (s / 2) R(a) (+-1, +-1) lie in [0, 1]^2 whenever the rotated square's bounding box
    fits (side * (|cos a| + |sin a|) <= 1); the others (side 1 rotated) are centred."""
    boxes = crop_boxes(5000, (0.3, 1.0), rotation=40, generator=gen(1))
    a, s, c = boxes.angles, boxes.sides, boxes.centers
    assert a.abs().max() <= math.radians(40) + 1e-6 and a.abs().max() > math.radians(39)
    fits = s * (a.cos().abs() + a.sin().abs()) <= 1
    assert fits.any() and (~fits).any()
    rot = torch.stack([torch.stack([a.cos(), -a.sin()], -1), torch.stack([a.sin(), a.cos()], -1)], -2)
    signs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    corners = c[:, None] + 0.5 * s[:, None, None] * torch.einsum("mij,kj->mki", rot, signs)
    inside = ((corners >= -1e-6) & (corners <= 1 + 1e-6)).all(-1).all(-1)
    assert inside[fits].all()
    torch.testing.assert_close(c[~fits], torch.full_like(c[~fits], 0.5))


def test_full_crop_returns_the_image():
    """scale (1, 1), no rotation, same size: the sampling grid falls on the pixel centres, the crop is
    the image (bilinear weights 0/1: float round-off only)."""
    x = torch.rand(2, 3, 20, 20, generator=gen(0))
    crops = random_crops(x, 3, 20, (1.0, 1.0), generator=gen(1))
    torch.testing.assert_close(crops, x.repeat_interleave(3, dim=0), rtol=0, atol=1e-5)


def test_crop_of_a_ramp_is_the_ramp_at_the_crop_positions():
    """Image k channel c = a_c x + b_c y + k (x, y pixel indices): bilinear interpolation of a linear
    image is exact, so the crop of box (centre, side) at output pixel (i, j) is the ramp at
    x = (cx - side / 2) S + (j + 0.5) side S / out - 0.5 (likewise y). Sides of 0.5 keep every sample
    between the first and last pixel centres, where no border rule applies."""
    size, out, n = 32, 16, 4
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    a, b = torch.tensor([0.01, -0.02, 0.005]), torch.tensor([0.02, 0.01, -0.015])
    ramp = a[:, None, None] * x + b[:, None, None] * y  # (3, S, S)
    images = torch.stack([ramp + 0.5 + 0.1 * k for k in range(2)])
    images = images - images.min() + 0.01
    crops = random_crops(images, n, out, (0.5, 0.5), generator=gen(5))
    boxes = crop_boxes(2 * n, (0.5, 0.5), generator=gen(5))  # the same draws: random_crops draws these first
    j = torch.arange(out).float()
    for row in range(2 * n):
        k = row // n  # crops of image k are rows k * n .. (k + 1) * n - 1
        (cx, cy), s = boxes.centers[row], boxes.sides[row]
        xs = (cx - s / 2) * size + (j + 0.5) * s * size / out - 0.5
        ys = (cy - s / 2) * size + (j + 0.5) * s * size / out - 0.5
        offset = images[k, :, 0, 0] - ramp[:, 0, 0]
        expected = (
            a[:, None, None] * xs[None, None, :]
            + b[:, None, None] * ys[None, :, None]
            + offset[:, None, None]
        )
        torch.testing.assert_close(crops[row], expected, rtol=0, atol=1e-5)


def test_crops_are_batched_image_by_image_and_noise_has_its_deviation():
    """K = 3 constant images k / 4: rows k * n .. (k + 1) * n - 1 are crops of image k; noise 0.1 adds
    Gaussian noise of standard deviation 0.1 (3 * 5 * 3 * 24 * 24 draws: the sample sd is within 2 %)."""
    k, n = 3, 5
    images = torch.stack([torch.full((3, 40, 40), (i + 1) / 4) for i in range(k)])
    crops = random_crops(images, n, 24, (0.3, 0.9), rotation=30, generator=gen(0))
    assert crops.shape == (k * n, 3, 24, 24)
    expected = torch.arange(1, k + 1).float().div(4).repeat_interleave(n)
    torch.testing.assert_close(crops.mean((1, 2, 3)), expected)
    noisy = random_crops(images, n, 24, (0.3, 0.9), noise=0.1, generator=gen(0))
    assert (noisy - expected.view(-1, 1, 1, 1)).std().item() == pytest.approx(0.1, rel=0.02)
    # deterministic per generator seed
    torch.testing.assert_close(noisy, random_crops(images, n, 24, (0.3, 0.9), noise=0.1, generator=gen(0)))


def test_crop_settings_are_checked():
    for scale in [(0.5, 0.2), (0.0, 0.5), (0.5, 1.2), (0.5,)]:
        with pytest.raises(ValueError, match="scale"):
            CropTransform(scale=scale)
    with pytest.raises(ValueError, match="rotation"):
        CropTransform(rotation=200)
    with pytest.raises(ValueError, match="noise"):
        CropTransform(noise=-0.1)
    with pytest.raises(ValueError, match="n_crops"):
        CropTransform(n_crops=0)
