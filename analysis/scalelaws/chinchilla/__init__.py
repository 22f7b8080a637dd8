"""Compute-optimal model size (Hoffmann et al. 2022, arXiv 2203.15556; docs/laws.md §4):
approach 2 (isoFLOP), approach 3 (loss surface), proposals, plots."""
