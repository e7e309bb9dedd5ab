"""Shipmate: a self-hosted MLOps management agent.

Kept empty on purpose: ``bosun-plugin-runner`` imports this package on every
action, so nothing here may pull in heavy modules.
"""

__version__ = "0.1.0"
