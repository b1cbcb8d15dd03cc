"""The order `make test` hands the suite to its pytest-xdist workers (`--dist worksteal`, three of them).

Work stealing gives each of the n workers a contiguous block of the collection (equal counts, in order);
a worker that runs dry takes the back half of another's queue. So the run ends together when each block
starts with its share of the long tests and ends with short ones. `balanced_order` builds those blocks:
the long tests are dealt longest first to the block with less work (the LPT rule), the rest of the suite
fills the blocks to equal counts, and each block runs longest first.

A module whose tests share an expensive module fixture stays in one piece; only the modules listed in
`PER_TEST` (cheap fixtures, minutes per test) are dealt test by test. The seconds below were measured
with `--durations` (2 cores, one thread per worker); a stale figure costs balance, never a result.
"""

from __future__ import annotations

from collections import defaultdict

# Per test (node id after the file name), for the modules whose tests are dealt one by one.
PER_TEST = {
    "test_attribution_localization.py": {
        "test_energy_in_object_mask[sobol]": 120,
        "test_energy_in_object_mask[rise]": 210,
        "test_energy_in_object_mask[hsic]": 115,
        "test_energy_in_object_mask[smoothgrad]": 7,
        "test_energy_in_object_mask[integrated_gradients]": 7,
        "test_energy_in_object_mask[kernel_shap]": 15,
        "test_energy_in_object_mask[lime]": 10,
        "test_energy_in_object_mask[occlusion]": 8,
    },
    "test_notebooks.py": {
        "test_notebook_runs_at_ci_scale[11_hsic_attribution]": 170,
        "test_notebook_runs_at_ci_scale[40_maco]": 80,
        "test_notebook_runs_at_ci_scale[13_mege_reco]": 106,
        "test_notebook_runs_at_ci_scale[14_back_to_the_baseline]": 70,
        "test_notebook_runs_at_ci_scale[20_craft]": 67,
        "test_notebook_runs_at_ci_scale[30_archetypal_sae]": 45,
        "test_notebook_runs_at_ci_scale[12_forgrad]": 45,
        "test_notebook_runs_at_ci_scale[31_mp_sae]": 40,
        "test_notebook_runs_at_ci_scale[21_holistic_concepts]": 36,
        "test_notebook_runs_at_ci_scale[00_tour]": 36,
        "test_notebook_runs_at_ci_scale[32_universal_sae]": 33,
        "test_notebook_runs_at_ci_scale[10_sobol_attribution]": 32,
        "test_notebook_runs_at_ci_scale[34_conceptual_blindspots]": 26,
        "test_notebook_runs_at_ci_scale[41_feature_accentuation]": 23,
        "test_notebook_runs_at_ci_scale[33_spade_projecting_assumptions]": 19,
    },
}
# Per module, for the others (a module absent here counts half a second per test).
PER_MODULE = {
    "test_attribution_xplique.py": 70,
    "test_featviz_zoo.py": 67,
    "test_binder.py": 55,
    "test_readme.py": 47,
    "test_metrics_on_zoo.py": 20,
    "test_attribution_sobol_hsic.py": 40,
    "test_explain.py": 35,
    "test_install.py": 30,
    "test_explorer.py": 22,
    "test_concepts_zoo.py": 20,
    "test_sae_training.py": 20,
    "test_sae_dictionaries.py": 18,
    "test_docs.py": 14,
    "test_sae_blindspots_zoo.py": 11,
    "test_models.py": 10,
    # browser tests
    "test_voila_tour_browser.py": 40,
    "test_explorer_browser.py": 90,  # with the slow-onload page (its own session)
    "test_featviz_canvas_browser.py": 25,
    "test_attribution_viewer_browser.py": 30,
    "test_sae_widgets_browser.py": 30,
    "test_concept_gallery_browser.py": 20,
    "test_dataset_viewer_browser.py": 18,
    "test_explain_report_browser.py": 18,
    "test_widget_layout_browser.py": 16,
    "test_metrics_board_browser.py": 8,
}
DEFAULT_PER_TEST = 0.5


def _units(items: list) -> list[tuple[float, list]]:
    """(estimated seconds, items) per unit: one test of a PER_TEST module, or a whole other module."""
    units: list[tuple[float, list]] = []
    by_module: dict[str, list] = defaultdict(list)
    for item in items:
        name = item.path.name
        if name in PER_TEST:
            key = item.nodeid.split("::", 1)[-1]
            units.append((PER_TEST[name].get(key, DEFAULT_PER_TEST), [item]))
        else:
            by_module[name].append(item)
    for name, group in by_module.items():
        units.append((PER_MODULE.get(name, DEFAULT_PER_TEST * len(group)), group))
    return units


def balanced_order(items: list, workers: int = 2) -> list:
    """`items` reordered as `workers` contiguous blocks of equal count and about equal estimated time,
    each longest first (see the module docstring). The order is a pure function of the collection, so
    every worker computes the same one (xdist requires identical collections)."""
    if workers < 2 or len(items) < 2 * workers:
        return list(items)
    units = sorted(_units(items), key=lambda u: (-u[0], u[1][0].nodeid))
    bins: list[list[tuple[float, list]]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for seconds, group in units:  # LPT: each unit to the least loaded block
        k = min(range(workers), key=lambda i: (load[i], i))
        bins[k].append((seconds, group))
        load[k] += seconds
    blocks = [[it for _, group in b for it in group] for b in bins]
    # xdist deals equal counts (the first blocks get the floor): move the shortest tests, from the ends of
    # the blocks over their count to the ends of those under it
    target = [
        len(items) // workers + (1 if i >= workers - len(items) % workers else 0) for i in range(workers)
    ]
    spare = []
    for i, block in enumerate(blocks):
        while len(block) > target[i]:
            spare.append(block.pop())
    for i, block in enumerate(blocks):
        while len(block) < target[i]:
            block.append(spare.pop())
    return [it for block in blocks for it in block]
