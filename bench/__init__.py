"""Benchmarks: pynetmap against the IPC a Python user would otherwise pick, in one run.

Each row runs its sender and receiver in separate processes (``bench.harness``); rows are listed
in ``bench.rows``, one module per transport; ``python -m bench`` prints the table.
"""
