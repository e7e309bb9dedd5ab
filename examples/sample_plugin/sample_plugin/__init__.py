"""Lets ``--plugin sample_plugin`` find the plugin once this directory is importable or installed."""

from sample_plugin.sample_plugin import SamplePlugin

__all__ = ["SamplePlugin"]
