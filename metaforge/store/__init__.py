"""Storage: the event log (source of truth) and the projections derived from it."""
