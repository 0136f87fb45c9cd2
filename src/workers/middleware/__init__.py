"""Dramatiq middleware of the worker broker: runtime, job lifecycle, failures, metrics, the sweeper."""
