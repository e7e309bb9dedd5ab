"""The filesystem plugin: one directory per deployment, for a prediction server to read.

`plugin` carries the actions out; `settings` validates the private config; `reaper`
deletes what was renamed aside in the background. The layout itself is
`shipmate.common.deployments_dir`.
"""

from shipmate.plugins.filesystem.plugin import FilesystemPlugin
from shipmate.plugins.filesystem.settings import DEFAULTS, FilesystemSettings

__all__ = ["DEFAULTS", "FilesystemPlugin", "FilesystemSettings"]
