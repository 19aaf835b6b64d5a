"""Benchmarks: Alliance against its physical limit (raw asyncpg) and the Python
``eventsourcing`` library, on one server in one run. See ``bench/README.md``."""
