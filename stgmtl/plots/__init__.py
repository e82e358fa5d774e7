"""Plots: data maps (datamap.py), task groups (groups.py), evaluation (evaluation.py)."""
