"""Observing the broker: snapshots, rates, lag, ETAs, workers, stuck jobs, alerts."""
