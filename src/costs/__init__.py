"""Prices, estimates, budgets and the cost ledger."""
