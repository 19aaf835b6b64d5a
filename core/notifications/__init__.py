"""Notifications: the events (``events.py``), the pure risk-flag policy (``policy.py``), the
message texts (``messages.py``), the dispatcher's tables (``queue.py``) and the dispatcher
(``dispatcher.py``). Nothing is imported here, so the event catalog can import ``events``
without pulling in the dispatcher."""
