"""Read models: pure folds from events to rows, and the tables they live in."""
