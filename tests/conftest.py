"""Shared fixtures: markers that skip with a reason, and a check that tests leave no trace."""
