"""Command-line tools built on the public API (demo, vale-ctl, ...); no logic of their own."""
