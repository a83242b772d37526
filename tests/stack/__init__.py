"""Tests on a real Airflow stack, and the harness that runs one (`tests.stack.harness`).

The harness is re-exported here so `from tests.stack import AirflowStack` works: a module
`tests/stack.py` could not sit next to this package (the package would shadow it).
"""

from tests.stack.harness import (
    COMPONENTS,
    LOCAL_DAG_ID,
    RENDER_POOL,
    RENDER_TASK_ID,
    STACK_COOKIE,
    STACK_DAGS,
    WELCOME_TEMPLATE,
    AirflowStack,
    StackError,
    TaskInstanceInfo,
    find_render_process,
    manifest_path,
    sample_rows,
    template_variant,
    write_batch,
)

__all__ = [
    "COMPONENTS",
    "LOCAL_DAG_ID",
    "RENDER_POOL",
    "RENDER_TASK_ID",
    "STACK_COOKIE",
    "STACK_DAGS",
    "WELCOME_TEMPLATE",
    "AirflowStack",
    "StackError",
    "TaskInstanceInfo",
    "find_render_process",
    "manifest_path",
    "sample_rows",
    "template_variant",
    "write_batch",
]
