"""The XComs a batch leaves, in one place: who writes each, who reads it.

- `prepare_batch` -> `return_value`: one small entry per render task (its grid label), what
  `expand_kwargs` maps over; `lane.<i>`: render task `i`'s rows (row positions and digests, no
  variables), one XCom per task so that each task reads only its own (a single list would be
  read whole by every task: 10 MB each for 100,000 rows);
  `spec`: the facts every render shares (`contract.rows.BatchSpec`); `report`: what the manifest
  needs about the batch as a whole (`contract.rows.BatchReport`), pushed first on every path.
- a render task -> `return_value`: its rows' manifest rows (`contract.rows.decode_rows`);
  `progress`: where a local lane is now (row, percentage), for the batch page.
- `approve_cost` -> `approval`: what the cost gate decided and who (`contract.approval.Approval`);
  its own key, pushed before a Reject skips the renders (a skipping task returns no value).
- `collect_manifest` -> `return_value`: the manifest's URI and totals; `manifest`: its URI alone,
  pushed as soon as it is written (also when the task then fails the run).
"""

from __future__ import annotations

RESULT_KEY = "return_value"
SPEC_KEY = "spec"
REPORT_KEY = "report"
PROGRESS_KEY = "progress"
APPROVAL_KEY = "approval"
MANIFEST_KEY = "manifest"
LANE_KEY_PREFIX = "lane."


def lane_key(map_index: int) -> str:
    """The XCom key of render task `map_index`'s rows (pushed by prepare_batch)."""
    return f"{LANE_KEY_PREFIX}{map_index}"


def lane_index(key: str) -> int | None:
    """The map index a `lane.<i>` key is for, or None for any other key."""
    rest = key.removeprefix(LANE_KEY_PREFIX)
    return int(rest) if rest != key and rest.isdigit() else None
