"""Run a DAG object for real with `dag.test()` (in-process Execution API, real SQLite DB)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

_migrated = False


def ensure_db() -> None:
    """Migrate the test Airflow DB once per pytest process (about 8 s)."""
    global _migrated
    if _migrated:
        return
    subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
    )
    _migrated = True


def run_dag(dag: Any, run_conf: dict[str, Any] | None = None) -> Any:
    """Serialize `dag` into the DB (it lives outside any bundle) and run it with dag.test()."""
    ensure_db()
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test(run_conf=run_conf)


def ti_states(dag_run: Any) -> dict[tuple[str, int], str]:
    """{(task_id, map_index): state} for a finished dag run."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id
        )
        return {(ti.task_id, ti.map_index): str(ti.state) for ti in tis}
