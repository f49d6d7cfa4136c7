"""Reproduce a deep-learning lecture's results as tracked, repeatable experiments."""

__version__ = "0.1.0"
