"""Evaluation: the paper's metrics as streaming accumulators (metrics) and an experiment's summary (summary)."""
