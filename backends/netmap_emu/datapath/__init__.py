"""What runs inside txsync/rxsync/poll: ring controllers (prologue, lock, wake-up), pipes, VALE
forwarding with its lookup, and monitor deliveries.

Imports the shared-memory layer only; what it must learn from the kernel arrives as callables.
"""
