"""The batch in the Airflow UI: a "HyperFrames batch" tab on every DAG run, and a list of
recent batches in the navigation (`batch_view.HyperframesPlugin`, an `airflow.plugins` entry
point). The page and its JSON are served by a FastAPI app of ours (`app.py`) that only the
api-server builds; what it shows is decided in `contract/page.py`.
"""
