"""eryx-port: a fast, differentiable PyTorch port of eryx.

Same public names and signatures as eryx (``eryx_port.map_utils``, ``eryx_port.scatter``,
``eryx_port.pdb``, ``eryx_port.models``), returning torch tensors, float64 by default.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import eryx_port` stays cheap and the CLI starts fast.
    if name == "OnePhonon":
        from .models import OnePhonon

        return OnePhonon
    raise AttributeError(f"module 'eryx_port' has no attribute {name!r}")
