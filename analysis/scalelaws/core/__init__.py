"""Shared by every law: fitting (multi-start, robust loss, bootstrap), power laws, generic checks,
diagnostics, the Result type, progress, figure helpers."""
