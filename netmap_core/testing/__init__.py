"""Tools for testing code built on pynetmap: Hypothesis strategies for frames (``frames``).

Needs the ``test`` extra (Hypothesis); nothing here is imported by ``netmap_core`` itself.
"""
