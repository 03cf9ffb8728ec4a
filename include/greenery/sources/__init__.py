"""The raw source tables: their schema, loading them, and checking they are fresh before a run."""
