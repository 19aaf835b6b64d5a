"""Not-on-track alerts: the events (``events.py``), the pure rules over a client's series
(``rules.py``), the fold that follows the store and decides (``policy.py``) and the process
that runs it as one leader among the app's processes (``follower.py``). Nothing is imported
here, so the client domain and the event catalog can import ``events`` alone."""
