"""scalelaws: fit scaling laws to scalelab results (numpy/scipy/statsmodels/polars only)."""
