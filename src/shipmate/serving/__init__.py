"""The portable prediction server (``shipmate serve``): model packages over HTTP, one or many.

Importable without the control plane: depends only on `shipmate.packages` and
`shipmate.common`. The modules and the data path of a prediction through them are
drawn in docs/architecture.md and docs/serving.md.
"""

from shipmate.serving.settings import ServeSettings

__all__ = ["ServeSettings"]
