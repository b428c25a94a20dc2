"""landmark: PFLD facial landmarks for driver monitoring."""

__version__ = "0.1.0"
