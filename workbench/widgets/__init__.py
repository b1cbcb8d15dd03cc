"""Panel + HoloViews widgets: the only package of the workbench that imports panel, holoviews or bokeh.

Importing it loads Panel's JavaScript inline, once (no CDN): see :func:`ensure_extension`.
Widgets receive results (images, predictions, maps, concepts); they never train or explain by themselves.

AttributionViewer (maps of several methods over images), DatasetViewer (images, labels, concepts),
MetricsBoard (metric scores by method), AtomBrowser and BlindspotComparer (sparse dictionaries' atoms),
ConceptGallery (a class's concepts by importance: crops, maps, images, recursion tree; linked to an
AttributionViewer), FeatureVizCanvas (a channel's, atom's, concept's or class's feature visualization, run
live through a given optimizer: stop, transparency, parameterizations side by side, PNG export), Explorer (one
app of linked views over a model and its images, computed in the background by an ExploreSession).
"""

from workbench.widgets.atom_browser import AtomBrowser
from workbench.widgets.attribution_viewer import AttributionViewer
from workbench.widgets.blindspot_comparer import BlindspotComparer
from workbench.widgets.concept_gallery import ConceptGallery
from workbench.widgets.dataset_viewer import DatasetViewer
from workbench.widgets.explorer import Explorer
from workbench.widgets.featviz_canvas import FeatureVizCanvas
from workbench.widgets.html import ensure_extension
from workbench.widgets.metrics_board import MetricsBoard

ensure_extension()

__all__ = [
    "AtomBrowser",
    "AttributionViewer",
    "BlindspotComparer",
    "ConceptGallery",
    "DatasetViewer",
    "Explorer",
    "FeatureVizCanvas",
    "MetricsBoard",
    "ensure_extension",
]
