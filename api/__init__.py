"""The Litestar app: a thin HTTP adapter over continuity's services."""
