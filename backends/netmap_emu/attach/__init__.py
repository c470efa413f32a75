"""Interfaces attached to emulated VALE switches (``vale-ctl -a/-h valeSW:IFNAME``): a supervised
pump process forwards between a VALE port named like the interface and its ``netmap:IFNAME`` port.

:mod:`.records` keeps one crash-safe record per attachment in the namespace directory,
:mod:`.supervisor` starts, stops, restarts and reports the pump, :mod:`.pump` moves the frames.
"""
from .records import Attachment
from .supervisor import attach_interface, attachments, detach_interface, interface_exists

__all__ = ["Attachment", "attach_interface", "attachments", "detach_interface", "interface_exists"]
