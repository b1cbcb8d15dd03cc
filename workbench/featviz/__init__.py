"""Feature visualization: what image makes a channel, an SAE atom, a concept or a class fire?

``visualize`` optimizes an image for an :mod:`~workbench.featviz.objectives` objective under a
parameterization (pixels, a 1/f Fourier spectrum, or MACO's phase with a fixed natural magnitude) and
returns it with its transparency map; ``accentuate`` moves a given image toward an objective while staying
close to it. A method layer: it never imports widgets (``FeatureVizCanvas`` displays what it computes).

References: Fel et al., MACO, NeurIPS 2023; Hamblin, Fel et al., Feature Accentuation, 2024; Olah,
Mordvintsev & Schubert, Feature Visualization, Distill 2017.
"""

from workbench.featviz import objectives as objectives  # the module: objectives.channel(...)
from workbench.featviz.accentuation import accentuate
from workbench.featviz.natural_spectra import SPECTRA, load_spectrum
from workbench.featviz.parameterizations import PARAMETERIZATIONS, color_correlation, magnitude_spectrum
from workbench.featviz.visualization import FeatureViz, visualize

__all__ = [
    "PARAMETERIZATIONS",
    "SPECTRA",
    "FeatureViz",
    "accentuate",
    "color_correlation",
    "load_spectrum",
    "magnitude_spectrum",
    "visualize",
]
