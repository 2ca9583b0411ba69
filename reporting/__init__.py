"""Reporting: the paper's tables beside our results (tables, data/paper_tables.json) and figures (plots)."""
