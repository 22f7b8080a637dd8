"""Hyperparameter scaling laws: the optimal peak LR η* and batch size B* per (N, D) cell from a
quadratic loss surface over (ln η, ln B), their power laws in N, D and C = 6ND, predictions
with intervals and the loss penalty of an off-optimum (η, B) (docs/laws.md §9; DeepSeek LLM
2024, Step Law 2025, Power Lines 2025): runs, law, surface, scaling, fit, checks, predict,
plots."""
