"""The edges people and systems reach: the HTTP API (Litestar) and the ``alliance`` CLI."""
