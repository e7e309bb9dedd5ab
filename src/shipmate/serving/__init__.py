"""The portable prediction server (``shipmate serve``): model packages over HTTP, one or many.

Importable without the control plane: depends only on `shipmate.packages`.
"""

from shipmate.serving.settings import ServeSettings

__all__ = ["ServeSettings"]
