"""Rerunning what did not render: which rows, checked against the batch, and attempts (pure).

Two ways back to a finished batch: clear its failed render tasks (the same run renders them
again and `collect_manifest` rewrites the manifest, counting each row's attempts), or start a
new run of "the failed rows of run X" from its manifest. The manifest only says *which* lines
to render again and under which output keys; the rows themselves, variables included, are read
again from the original batch (variables are never in a manifest), and a line that no longer
holds the row the manifest names is refused rather than rendered under someone else's key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from hyperframes_airflow.contract.batch import BatchRow
from hyperframes_airflow.contract.issues import Issue
from hyperframes_airflow.contract.manifest import Manifest, ManifestRow, RerunOf
from hyperframes_airflow.contract.plan import BatchPlan, InvalidRow

__all__ = [
    "RERUN_STATUSES",
    "RerunOf",
    "batch_jsonl",
    "count_attempts",
    "narrow_plan",
    "rerun_of",
    "rerun_targets",
    "select_rows",
]

#: Row statuses a rerun renders again: the render was tried and did not succeed.
RERUN_STATUSES: frozenset[str] = frozenset({"failed", "timed-out", "aborted", "failed-to-start"})


class _Keyed(Protocol):
    @property
    def line(self) -> int: ...

    @property
    def output_key(self) -> str: ...


K = TypeVar("K", bound=_Keyed)


def rerun_targets(manifest: Manifest) -> dict[int, str]:
    """`{line: outputKey}` of the manifest's rows that were tried and did not succeed."""
    return {
        row.input_line: row.output_key
        for row in manifest.rows
        if row.status in RERUN_STATUSES and row.output_key
    }


def rerun_of(manifest: Manifest, uri: str) -> RerunOf:
    """The reference a rerun's manifest carries to the run it repeats."""
    return RerunOf(
        manifest_uri=uri,
        dag_id=manifest.dag_id,
        run_id=manifest.run_id,
        batch_source=manifest.batch_source,
        lines=sorted(rerun_targets(manifest)),
    )


def select_rows(rows: Sequence[K], targets: Mapping[int, str]) -> tuple[list[K], list[Issue]]:
    """The rows at the target lines, in order, and one error per target that the batch no
    longer holds as the manifest says (gone, invalid now, or another output key)."""
    by_line = {row.line: row for row in rows}
    kept: list[K] = []
    issues: list[Issue] = []
    for line in sorted(targets):
        expected = targets[line]
        row = by_line.get(line)
        if row is None:
            issues.append(
                Issue(
                    line,
                    "outputKey",
                    "error",
                    f"line {line} ({expected}) is not a valid row of the batch any more; "
                    "not rendering it again",
                )
            )
        elif row.output_key != expected:
            issues.append(
                Issue(
                    line,
                    "outputKey",
                    "error",
                    f"line {line} now holds outputKey {row.output_key!r}, the manifest says "
                    f"{expected!r}: the batch changed since that run; not rendering it again",
                )
            )
        else:
            kept.append(row)
    return kept, issues


def narrow_plan(plan: BatchPlan, targets: Mapping[int, str]) -> BatchPlan:
    """The plan of a rerun: only the target lines, each checked against the output key the
    manifest names (a line that changed, went away or is invalid now does not render)."""
    invalid = {bad.line: bad for bad in plan.invalid if bad.line in targets}
    candidates = [row for row in plan.rows if row.line in targets]
    kept, issues = select_rows(candidates, {k: v for k, v in targets.items() if k not in invalid})
    for issue in issues:
        assert issue.line is not None
        found = next((row for row in plan.rows if row.line == issue.line), None)
        invalid[issue.line] = InvalidRow(
            issue.line, found.output_key if found else targets[issue.line], [issue]
        )
    return BatchPlan(
        rows=kept,
        invalid=[invalid[line] for line in sorted(invalid)],
        issues=[i for i in plan.issues if i.line is None or i.line in targets] + issues,
        site_id=plan.site_id,
        composition=plan.composition,
    )


def count_attempts(previous: Manifest | None, rows: Iterable[ManifestRow]) -> list[ManifestRow]:
    """Rows whose `attempt` counts the renders before them in the previous manifest of the
    same run (the one a rerun replaces): a row rendered again is one attempt past the last
    one recorded; a row reused as it was keeps its number."""
    before = {row.input_line: row for row in previous.rows} if previous is not None else {}
    out: list[ManifestRow] = []
    for row in rows:
        old = before.get(row.input_line)
        fresh = row.started_at is not None and (old is None or old.started_at != row.started_at)
        if old is not None and not fresh:
            out.append(row.model_copy(update={"attempt": old.attempt or row.attempt}))
            continue
        if old is not None and old.started_at is not None:
            tried = old.attempt or 1
            row = row.model_copy(update={"attempt": max(row.attempt or 1, tried + 1)})
        out.append(row)
    return out


def batch_jsonl(rows: Iterable[BatchRow]) -> str:
    """Rows as a batch again (outputKey, variables, executionName), one JSON object a line."""
    lines = []
    for row in rows:
        doc: dict[str, object] = {"outputKey": row.output_key, "variables": row.variables}
        if row.execution_name:
            doc["executionName"] = row.execution_name
        lines.append(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
    return "".join(lines)
