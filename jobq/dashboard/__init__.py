"""A web dashboard of a queue: ``jobq dashboard``, or ``Dashboard(queue)`` mounted as a WSGI app."""

from .app import Dashboard

__all__ = ["Dashboard"]
