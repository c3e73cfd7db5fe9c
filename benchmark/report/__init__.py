"""Reporting a run: paper-layout tables and comparisons, exported heat maps and curves."""
