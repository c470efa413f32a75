"""pynetmap's executable specification: the pipe reference model and conformance suite.

``python -m spec --backend NAME`` runs the suite outside pytest (see conformance.md).
"""
