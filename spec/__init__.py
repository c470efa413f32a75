"""pynetmap's executable specification: the documents of netmap's rules and the tests that run
the reference model and conformance machines of ``netmap_core.testing`` against a backend.

``pynetmap conformance --backend NAME`` runs the machines outside pytest (see conformance.md).
"""
