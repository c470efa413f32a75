"""``python -m bench``: run the benchmark rows and print the table (see ``bench/README.md``).

Only argument handling lives in ``bench.cli``; this file just calls it.
"""
from .cli import main

raise SystemExit(main())
