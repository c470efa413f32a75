"""``python -m spec``: the same as ``pynetmap conformance`` (netmap_tools/conformance.py), for a
source checkout; the options, output and exit status are that command's."""
from __future__ import annotations

import sys

from netmap_tools.conformance import main

if __name__ == "__main__":
    sys.exit(main())
