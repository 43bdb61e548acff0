"""The embedded engine: a queue in a directory, with nothing to run beside the program."""

from .engine import LocalEngine

__all__ = ["LocalEngine"]
