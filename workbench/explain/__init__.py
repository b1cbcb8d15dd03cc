"""The explain pipeline: one model and its images -> results (maps, scores, concepts, atoms, visualizations)
that reports, the Explorer and the command line read. :mod:`workbench.explain.session` is the Explorer's
on-demand, cached, background compute."""
