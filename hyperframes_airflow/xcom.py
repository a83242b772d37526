"""The XComs a batch leaves, in one place: who writes each, who reads it.

- `prepare_batch` -> `return_value`: the lanes, one per render task (row positions, no variables);
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
