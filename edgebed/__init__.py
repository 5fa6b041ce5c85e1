"""edgebed: a real distributed edge-learning testbed.

Subpackages map to the repository's top-level folders:
``edgebed.proto`` (wire contract, codec, shaping, link model),
``edgebed.models``, ``edgebed.device``, ``edgebed.server`` and
``edgebed.benchmarks``.
"""

__version__ = "0.1.0"


class EdgebedError(Exception):
    """Base class of every error edgebed raises on purpose."""
