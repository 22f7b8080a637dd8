"""Compute-optimal model size (Hoffmann et al. 2022, arXiv 2203.15556; Besiroglu et al. 2024,
arXiv 2404.10102; Porian et al. 2024, arXiv 2406.19146; docs/laws.md §4): law (the loss surface
and the optimal allocation), runs (the table approaches 2 and 3 share), fit (approach 3),
isoflop (approach 2), slices (one isoFLOP slice: window, robust parabola, bootstrap), checks,
propose (comparison, size for a budget), plots."""
