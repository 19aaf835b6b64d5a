"""Reminders as an event-sourced process: the events and settings (``events.py``,
``preferences.py``), the pure decision (``decide.py``), what it reads (``sources.py``), the
process at the edge (``runner.py``) and what the dispatcher needs to deliver (``delivery.py``).
Nothing is imported here, so the event catalog can import ``events`` alone."""
