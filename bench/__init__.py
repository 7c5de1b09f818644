"""Baton's benchmark: handoff cutover pause, missed evaluations and state transfer against the
baselines (stop-and-restart, rolling swap without state). Run it with ``python -m bench``; see
``docs/benchmarks.md``."""
