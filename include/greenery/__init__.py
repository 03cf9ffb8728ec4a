"""Greenery pipeline: raw Greenery tables in PostgreSQL to validated analytics marts."""
