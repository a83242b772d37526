"""Airflow hooks for HyperFrames render stacks (thin layers over the Amazon provider's hooks)."""
