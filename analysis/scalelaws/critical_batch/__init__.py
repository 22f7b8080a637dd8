"""Critical batch size (McCandlish et al. 2018; Zhang et al., ICLR 2025; docs/laws.md §2): law
(steps to a target, S(B)), fit, checks, the study's tables, report, plots."""
