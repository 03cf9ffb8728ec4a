"""Materializing models: table, incremental, daily partition, and the quarantine of flagged rows."""
