"""netmap_tools: the ``pynetmap`` command and its tools (info, demo, vale-ctl), kept out of
the core: they parse arguments, print, and start processes, over netmap_core's public API only.
"""
