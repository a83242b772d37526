"""Which rows a rerun renders, checked against the batch, and how attempts are counted."""

from __future__ import annotations

import io
import json

from hyperframes_airflow.contract.batch import parse_batch
from hyperframes_airflow.contract.config import RenderConfig
from hyperframes_airflow.contract.manifest import Manifest, ManifestRow
from hyperframes_airflow.contract.plan import load_project, plan_batch
from hyperframes_airflow.contract.rerun import (
    batch_jsonl,
    count_attempts,
    narrow_plan,
    rerun_of,
    rerun_targets,
    select_rows,
)
from tests.conftest import REPO


def _row(line: int, status: str, key: str | None = None, **fields: object) -> ManifestRow:
    return ManifestRow.model_validate(
        {"inputLine": line, "outputKey": key or f"v/{line}.mp4", "status": status, **fields}
    )


def _manifest(*rows: ManifestRow) -> Manifest:
    return Manifest(
        dag_id="d", run_id="r1", backend="local", batch_source="/b.jsonl", rows=list(rows)
    )


def test_a_rerun_takes_the_rows_that_were_tried_and_did_not_succeed() -> None:
    manifest = _manifest(
        _row(1, "succeeded"),
        _row(2, "failed"),
        _row(3, "timed-out"),
        _row(4, "aborted"),
        _row(5, "failed-to-start"),
        _row(6, "invalid"),
        _row(7, "skipped"),
        _row(8, "would-invoke"),
    )
    assert rerun_targets(manifest) == {n: f"v/{n}.mp4" for n in (2, 3, 4, 5)}
    ref = rerun_of(manifest, "file:///m.json")
    assert (ref.run_id, ref.batch_source, ref.lines) == ("r1", "/b.jsonl", [2, 3, 4, 5])


BATCH = (
    "\n".join(
        json.dumps(r)
        for r in [
            {"outputKey": "v/1.mp4", "variables": {"title": "one"}},
            {"outputKey": "v/2.mp4", "variables": {"title": "two"}},
            {"outputKey": "v/moved.mp4", "variables": {"title": "three"}},
            {"outputKey": "v/4.mov"},
        ]
    )
    + "\n"
)


def test_only_target_lines_that_still_hold_their_row_render_again() -> None:
    rows = parse_batch(io.BytesIO(BATCH.encode())).rows
    kept, issues = select_rows(rows, {2: "v/2.mp4", 3: "v/3.mp4", 9: "v/9.mp4"})
    assert [r.line for r in kept] == [2]
    assert [(i.line, i.field) for i in issues] == [(3, "outputKey"), (9, "outputKey")]
    assert "now holds outputKey 'v/moved.mp4'" in issues[0].message
    assert "not a valid row of the batch any more" in issues[1].message
    # The rows come back as a batch, variables read from the batch itself.
    assert batch_jsonl(kept) == '{"outputKey":"v/2.mp4","variables":{"title":"two"}}\n'


def test_a_narrowed_plan_keeps_the_targets_and_reports_the_ones_it_cannot_render() -> None:
    composition, site = load_project(REPO / "examples" / "templates" / "welcome")
    plan = plan_batch(
        io.BytesIO(BATCH.encode()),
        config=RenderConfig(width=640, height=360, fps=30),
        composition=composition,
        site_id=site,
        dag_id="d",
        run_id="r2",
    )
    narrowed = narrow_plan(plan, {2: "v/2.mp4", 3: "v/3.mp4", 4: "v/4.mov"})
    assert [r.line for r in narrowed.rows] == [2]
    assert [(bad.line, bad.output_key) for bad in narrowed.invalid] == [
        (3, "v/moved.mp4"),
        (4, "v/4.mov"),
    ]
    assert all(issue.line in (None, 2, 3, 4) for issue in narrowed.issues)


def test_attempts_count_renders_across_reruns_of_one_run() -> None:
    previous = _manifest(
        _row(1, "succeeded", attempt=1, startedAt="t1"),
        _row(2, "failed", attempt=1, startedAt="t2"),
        _row(3, "skipped"),
        _row(4, "timed-out", attempt=2, startedAt="t4"),
    )
    now = [
        _row(1, "succeeded", attempt=1, startedAt="t1"),  # reused as it was
        _row(2, "succeeded", attempt=1, startedAt="t2b"),  # rendered again
        _row(3, "succeeded", attempt=1, startedAt="t3"),  # its first render
        _row(4, "failed", attempt=3, startedAt="t4b"),  # the backend counted already
    ]
    assert [r.attempt for r in count_attempts(previous, now)] == [1, 2, 1, 3]
    assert [r.attempt for r in count_attempts(None, now)] == [1, 1, 1, 3]
