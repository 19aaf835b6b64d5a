"""One controller module per resource area."""
