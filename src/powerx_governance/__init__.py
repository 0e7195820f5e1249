"""PowerX plugin version governance."""

__version__ = "0.1.0"
