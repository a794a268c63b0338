"""The networks the engine trains (PyTorch): they need the [engine] extra (pyproject.toml)."""
