"""Knowledge capacity in bits per parameter (Allen-Zhu & Li 2024, arXiv 2404.05405; docs/laws.md
§3): law (bits), fit, checks, plots."""
