"""The no-op job of ``scripts/bench_startup.py``: it only creates a file, the signal that a
worker's first job is running."""


def touch(path: str) -> None:
    with open(path, "w"):
        pass
