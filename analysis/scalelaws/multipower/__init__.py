"""The multi-power law of the loss curve under any LR schedule (Luo et al., ICLR 2025, arXiv
2503.12811; docs/laws.md §1): law, curves, fit, checks, schedule optimiser, proposal, plots."""
