"""Data checks: the suite files, running them with Great Expectations, and summarizing the results."""
