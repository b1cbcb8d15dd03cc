"""Shared plumbing: validation, batching, devices, seeding, progress, serialization.

Nothing here knows about models, data or methods; every other layer may import it. The progress bar
is imported from its module (``workbench._core.progress.progress``): a package exports no name that
equals one of its submodules.
"""

from workbench._core.batching import batched_apply, iter_batches
from workbench._core.devices import module_device, resolve_device
from workbench._core.seeding import make_generator
from workbench._core.serialization import load_result, save_result
from workbench._core.validation import check_images, check_targets, closest_names

__all__ = [
    "batched_apply",
    "check_images",
    "check_targets",
    "closest_names",
    "iter_batches",
    "load_result",
    "make_generator",
    "module_device",
    "resolve_device",
    "save_result",
]
