"""Dramatiq broker, actors and job states."""
