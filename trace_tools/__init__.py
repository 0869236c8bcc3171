"""Record calls of a NumPy package, store them as safe traces, replay them against a port.

This package must stay importable without torch: recordings run in the NumPy
reference's own virtual environment.
"""

__version__ = "0.1.0"
