"""The domain: eventsourcing aggregates and their events, with no I/O."""
