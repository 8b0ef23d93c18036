"""taskpool operator: runs and autoscales Django task workers (never imports Django)."""

__version__ = "0.1.0"
