"""Random-weight checkpoints and per-image baselines used by tests and bench/ (not product code)."""
