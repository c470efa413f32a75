"""The emulator's shared memory: namespaces (directory, locks, names), allocator regions and
their kernel state, kring records, switch segments and the wake-up protocol.

Imports nothing else of netmap_emu; the kernel and the datapath both build on it.
"""
