"""Alliance core: the event store, the collaborative-goal domain and the projections."""
