"""Retrieve-then-rerank toolkit for Kaggle's Eedi misconception competition (and kin).

Modules each do one job; notebooks under ``notebooks/`` call into them.
"""

__version__ = "0.1.0"
