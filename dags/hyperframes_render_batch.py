"""Render a batch on the deployed HyperFrames Lambda stack, from the Airflow trigger form.

Stack settings come from the `hyperframes_default` connection (conn_type `aws`, extra with
`bucket_name` + `state_machine_arn`, or `stack_name`). Trigger it from the UI ("Trigger Dag"),
fill in the batch, and watch one mapped task per row; cancel a row or the whole run and its
renders are stopped. The manifest lands at `s3://<bucket>/manifests/...` unless you choose.

Above "Max cost" the run waits for a person in "Required actions" (approve renders, reject or
no answer within `HYPERFRAMES_APPROVAL_TIMEOUT_HOURS`, default 24, renders nothing). To render
only the rows of an earlier run that did not succeed, give its manifest in "Rerun failed rows
of": the rows are read again from that run's batch, under the same output keys. Each run has a
"HyperFrames batch" tab: rows, live progress, cost, outputs, and a "Rerun failed rows" button.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Param

from hyperframes_airflow.batch import render_batch

#: A per-run cap is a scheduling property fixed when the DAG is parsed, so it is set here (or via
#: this environment variable), not in the form; the pool caps renders across all runs.
MAX_CONCURRENT = int(os.environ.get("HYPERFRAMES_MAX_CONCURRENT", "16"))
#: Where a project typed into the form may be (batches and manifests may also be anywhere in
#: the stack's bucket); add more with $HYPERFRAMES_ALLOWED_ROOTS.
TEMPLATES = os.environ.get("HYPERFRAMES_TEMPLATES_DIR", "/opt/airflow/templates")
APPROVAL_TIMEOUT = timedelta(
    hours=float(os.environ.get("HYPERFRAMES_APPROVAL_TIMEOUT_HOURS", "24"))
)

with DAG(
    dag_id="hyperframes_render_batch",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["hyperframes"],
    doc_md=__doc__,
    params={
        "project_dir": Param(
            "/opt/airflow/templates/welcome",
            type=["null", "string"],
            title="Project",
            description="HyperFrames project directory (contains index.html); "
            "leave empty to render a deployed site",
        ),
        "site_id": Param(
            None,
            type=["null", "string"],
            title="Site id",
            description="Or a site already deployed (hyperframes-airflow deploy PROJECT_DIR "
            "prints it); then leave the project empty",
        ),
        "batch": Param(
            "s3://my-render-bucket/batches/welcome.jsonl",
            type="string",
            title="Batch JSONL",
            description="s3://, file:// or a local path; one {outputKey, variables} per line",
        ),
        "width": Param(1920, type="integer", minimum=16, maximum=7680, title="Width"),
        "height": Param(1080, type="integer", minimum=16, maximum=7680, title="Height"),
        "fps": Param(30, type="integer", enum=[24, 30, 60], title="Frames per second"),
        "format": Param(
            "mp4", type="string", enum=["mp4", "mov", "webm", "png-sequence"], title="Format"
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Validate and estimate; deploy and render nothing",
        ),
        "strict_variables": Param(
            False,
            type="boolean",
            title="Strict variables",
            description="Rows whose variables do not match the template "
            "are invalid (otherwise they render with warnings)",
        ),
        "max_cost_usd": Param(
            25.0,
            type="number",
            minimum=0,
            title="Max cost (USD)",
            description="Above this estimate a person approves the run before anything deploys",
        ),
        "confirm_cost": Param(
            False,
            type="boolean",
            title="Confirm cost",
            description="Render even when the estimate exceeds max cost (no approval asked)",
        ),
        "force_rerender": Param(
            False,
            type="boolean",
            title="Force re-render",
            description="Render rows again even if this run already did",
        ),
        "manifest_path": Param(
            "",
            type="string",
            title="Manifest path",
            description="Optional s3:// URI; default s3://<bucket>/manifests/...",
        ),
        "rerun_failed_of": Param(
            "",
            type="string",
            title="Rerun failed rows of",
            description="A manifest URI: render only its failed, aborted and timed-out rows "
            "(read again from its batch; Batch JSONL is then not read)",
            section="Rerun",
        ),
    },
):
    render_batch(
        project_dir="{{ params.project_dir }}",
        site_id="{{ params.site_id }}",
        batch="{{ params.batch }}",
        config={
            "width": "{{ params.width }}",
            "height": "{{ params.height }}",
            "fps": "{{ params.fps }}",
            "format": "{{ params.format }}",
        },
        backend="lambda",
        conn_id="hyperframes_default",
        allowed_roots=[TEMPLATES],
        max_concurrent=MAX_CONCURRENT,
        dry_run="{{ params.dry_run }}",
        strict=False,
        strict_variables="{{ params.strict_variables }}",
        max_cost_usd="{{ params.max_cost_usd }}",
        confirm_cost="{{ params.confirm_cost }}",
        force_rerender="{{ params.force_rerender }}",
        manifest_path="{{ params.manifest_path or None }}",
        approval_timeout=APPROVAL_TIMEOUT,
        rerun_of="{{ params.rerun_failed_of or None }}",
    )
