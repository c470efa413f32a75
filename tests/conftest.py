"""Makes the test helpers in this folder importable (``from layout import build``)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
