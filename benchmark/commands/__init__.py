"""One module per CLI command (see benchmark/cli.py)."""
