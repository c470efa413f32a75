"""The emulated kernel's control path, run under the namespace lock: the typed registry, REGISTER
of pipes, VALE ports and monitors, unregister, recovery, gc, and the VALE control requests.

Imports the shared-memory layer only, never the datapath (see spec/emulator.md).
"""
