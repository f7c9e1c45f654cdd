"""Continuity: the application layer wiring domain, privacy and projections to PostgreSQL."""
