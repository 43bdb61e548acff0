"""Tests of the PostgreSQL engine (jobq.postgres), against a real server."""
