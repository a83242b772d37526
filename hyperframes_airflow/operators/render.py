"""`render`: one mapped task instance per batch row; starts one render and sees it to the end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from hyperframes_airflow.backends import make_backend
from hyperframes_airflow.backends.base import RenderFailed, RenderJob
from hyperframes_airflow.operators._coerce import as_bool

#: XCom key every render pushes its manifest row under, on success and on failure.
ROW_RESULT_KEY = "row_result"


class HyperframesRenderOperator(BaseOperator):
    """Render one batch row and return its manifest row.

    `row` is the mapping entry produced by `prepare_batch`. It is deliberately not a template
    field: it carries the row's variables, which are personal data and must not show up in the
    UI's rendered-template view. The result (and, on failure, the error) is pushed to XCom under
    `row_result` so `collect_manifest` can report every row, including failed ones.
    """

    template_fields: Sequence[str] = ("local_root", "force_rerender")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        row: dict[str, Any],
        backend: str = "local",
        conn_id: str = "hyperframes_default",
        local_root: str | None = None,
        force_rerender: bool | str = False,
        render_timeout_s: float | None = 1800.0,
        stop_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.row = row
        self.backend = backend
        self.conn_id = conn_id
        self.local_root = local_root
        self.force_rerender = force_rerender
        self.render_timeout_s = render_timeout_s
        self.stop_on_kill = stop_on_kill
        self._pid: int | None = None

    def _job(self, context: Context) -> RenderJob:
        row = self.row
        return RenderJob(
            input_line=int(row["line"]),
            output_key=str(row["outputKey"]),
            execution_name=str(row["executionName"]),
            site_id=str(row["siteId"]),
            config=row.get("config") or {},
            variables=row.get("variables") or {},
            input_digest=str(row.get("digest", "")),
            attempt=int(context["ti"].try_number),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        job = self._job(context)
        backend = make_backend(self.backend, local_root=self.local_root, conn_id=self.conn_id)
        if backend.kind != "local":  # pragma: no cover - the Lambda path lands with its backend
            raise NotImplementedError(f"backend {backend.kind!r} is not available yet")
        from hyperframes_airflow.backends.local import LocalBackend

        assert isinstance(backend, LocalBackend)
        force = as_bool(self.force_rerender, name="force_rerender")
        previous = None if force else backend.previous_result(job)
        if previous is not None:
            self.log.info(
                "Row %d (%s) already rendered with this exact input; returning that result "
                "(set force_rerender to render again)",
                job.input_line,
                job.output_key,
            )
            return self._finish(context, previous)
        self.log.info("Rendering row %d -> %s", job.input_line, backend.output_uri(job.output_key))
        try:
            result = backend.render(
                job,
                on_progress=lambda line: self.log.info("%s", line),
                on_start=self._remember_pid,
                timeout_s=self.render_timeout_s,
            )
        except RenderFailed as failure:
            context["ti"].xcom_push(key=ROW_RESULT_KEY, value=failure.row)
            raise AirflowFailException(
                f"Row {job.input_line} ({job.output_key}) {failure.row['status']}: "
                f"{failure.row.get('cause') or failure.row.get('error')}"
            ) from failure
        finally:
            self._pid = None
        self.log.info(
            "Row %d done: %s (%s bytes, %s frames)",
            job.input_line,
            result["outputUri"],
            result.get("bytes"),
            result.get("frames"),
        )
        return self._finish(context, result)

    @staticmethod
    def _finish(context: Context, row: dict[str, Any]) -> dict[str, Any]:
        context["ti"].xcom_push(key=ROW_RESULT_KEY, value=row)
        return row

    def _remember_pid(self, pid: int) -> None:
        self._pid = pid

    def on_kill(self) -> None:
        """Stop the render when the task is killed (mark failed, clear, timeout)."""
        if self._pid is not None and self.stop_on_kill:
            self.log.info("Task killed: stopping render process group %d", self._pid)
            from hyperframes_airflow.backends.local import LocalBackend

            LocalBackend.stop(self._pid)
