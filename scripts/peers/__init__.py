"""Code for scripts/bench_peers.py that also runs in the peers' virtual environment.

Nothing here is part of jobq: ``driver`` measures one workload of one system and prints JSON,
``tasks`` holds the no-op job every system runs, ``huey_app`` is the SqliteHuey instance its
consumer loads. Only ``tasks`` and the jobq half of ``driver`` run with the project's interpreter.
"""
