"""Templated paths must stay under allowed roots: resolved paths and URI prefixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hyperframes_airflow.contract.roots import (
    NotUnderAllowedRoot,
    check_under_roots,
    is_template,
    under_roots,
)


def test_local_paths_are_resolved_before_they_are_compared(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    (root / "sub").mkdir(parents=True)
    (root / "out").symlink_to("/etc")
    assert under_roots(str(root / "sub" / "a.jsonl"), [str(root)])
    assert under_roots(f"file://{root}/sub/a.jsonl", [str(root)])
    assert under_roots(str(root), [str(root)])
    assert not under_roots(str(root / ".." / "elsewhere"), [str(root)])
    assert not under_roots(str(root / "out" / "passwd"), [str(root)])  # a link out of it
    assert not under_roots(f"{root}-sibling/a.jsonl", [str(root)])  # a prefix is not a parent
    assert not under_roots("/etc/passwd", [str(root)])


def test_uris_match_by_scheme_bucket_and_key_prefix() -> None:
    roots = ["s3://renders/batches/", "gs://other"]
    assert under_roots("s3://renders/batches/a.jsonl", roots)
    assert under_roots("s3://renders/batches", roots)
    assert not under_roots("s3://renders/batches2/a.jsonl", roots)
    assert not under_roots("s3://renders/other/a.jsonl", roots)
    assert not under_roots("gs://renders/batches/a.jsonl", roots)
    assert under_roots("gs://other/anything", roots)
    assert not under_roots("s3://renders/batches/a.jsonl", [])


def test_the_refusal_names_the_field_the_value_and_the_fix() -> None:
    with pytest.raises(NotUnderAllowedRoot) as caught:
        check_under_roots("/etc", ["/opt/templates"], field="project_dir")
    message = str(caught.value)
    assert "project_dir '/etc'" in message and "/opt/templates" in message
    assert "allowed_roots" in message and "HYPERFRAMES_ALLOWED_ROOTS" in message


def test_templates_are_recognised() -> None:
    assert is_template("{{ params.batch }}") and is_template("{% if x %}a{% endif %}")
    assert not is_template("/data/batch.jsonl") and not is_template(None)
