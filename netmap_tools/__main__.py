"""``python -m netmap_tools``: the ``pynetmap`` command, for when the console script is not on
PATH (a checkout, another virtualenv); same arguments, same exit codes.
"""
import sys

from .cli import main

sys.exit(main())
