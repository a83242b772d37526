"""Airflow operators: prepare the batch, deploy the site, render one row, collect the manifest."""
