"""noble: synthetic biological neurons on demand (Brian2 ground truth + NOBLE-style surrogate + service)."""

__version__ = "0.1.0"
