"""Triggers: wait for renders in the triggerer, without holding a worker."""
