"""Tests on a real Airflow stack (`devstack.airflow_stack`): what `dag.test()` cannot show."""
