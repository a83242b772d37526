"""The `hyperframes-airflow` console script, run as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

TEMPLATE = REPO / "examples" / "templates" / "welcome"
BATCH = REPO / "examples" / "batches" / "welcome.jsonl"
CLI = str(Path(sys.executable).with_name("hyperframes-airflow"))


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *map(str, args)], capture_output=True, text=True, timeout=120, env=os.environ
    )


def test_validate_accepts_the_example_batch() -> None:
    result = run("validate", TEMPLATE, BATCH, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"valid": True, "rows": 4, "issues": []}


def test_validate_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    batch = tmp_path / "b.jsonl"
    batch.write_text(
        "\n".join(
            [
                '{"outputKey": "a.mp4", "variables": {"title": 7, "secret": "x"}}',
                "",
                "[1, 2]",
                '{"outputKey": "a.mp4"}',
                '{"outputKey": "../up.mp4"}',
                '{"outputKey": "b.webm"}',
                '{"outputKey": "c.mp4", "variables": {"theme": "neon"}}',
            ]
        )
        + "\n"
    )
    result = run("validate", TEMPLATE, batch, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False and report["rows"] == 6
    by_line: dict[int, list[dict[str, str]]] = {}
    for issue in report["issues"]:
        by_line.setdefault(issue["line"], []).append(issue)
    assert sorted(by_line) == [1, 3, 4, 5, 6, 7]
    # Variable issues are warnings by default, with the Node CLI's wording.
    assert {i["severity"] for i in by_line[1]} == {"warning"}
    messages = [i["message"] for i in by_line[1]]
    assert 'Variable "title" expected string, got number.' in messages
    assert 'Variable "secret" is not declared in data-composition-variables.' in messages
    assert by_line[3][0]["message"].startswith("Invalid batch entry on line 3")
    assert "Duplicate outputKey" in by_line[4][0]["message"]
    assert by_line[5][0]["field"] == "outputKey"
    assert ".mp4" in by_line[6][0]["message"]
    # Enum messages never echo the value (personal data).
    assert by_line[7][0]["message"] == 'Variable "theme" must be one of "dark", "light".'


def test_strict_variables_turns_warnings_into_a_failure(tmp_path: Path) -> None:
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"outputKey": "a.mp4", "variables": {"title": 7}}\n')
    assert run("validate", TEMPLATE, batch).returncode == 0
    strict = run("validate", TEMPLATE, batch, "--strict-variables")
    assert strict.returncode == 1
    assert "line 1 [variables]" in strict.stdout and "FAILED" in strict.stdout


def test_validate_checks_the_extension_against_the_format(tmp_path: Path) -> None:
    batch = tmp_path / "b.jsonl"
    batch.write_text('{"outputKey": "a.webm"}\n')
    assert run("validate", TEMPLATE, batch, "--format", "webm").returncode == 0
    assert run("validate", TEMPLATE, batch).returncode == 1


def test_site_id_prints_only_the_node_compatible_hash(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_bytes(b"hi")
    result = run("site-id", tmp_path)
    assert result.returncode == 0
    assert result.stdout == "9a86e90741176ce2\n"


def test_estimate_states_its_assumptions() -> None:
    result = run("estimate", TEMPLATE, BATCH, "--width", "1920", "--height", "1080", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["rows"] == 4
    assert data["perRender"]["totalFrames"] == 60  # 2 s at 30 fps
    assert data["totalUsd"] > 0
    assert data["assumptions"]
    text = run("estimate", TEMPLATE, BATCH)
    assert text.returncode == 0 and "assumptions:" in text.stdout


def test_estimate_honours_the_output_resolution_preset() -> None:
    plain = json.loads(run("estimate", TEMPLATE, BATCH, "--json").stdout)
    result = run("estimate", TEMPLATE, BATCH, "--output-resolution", "landscape-4k", "--json")
    assert result.returncode == 0, result.stderr
    uhd = json.loads(result.stdout)
    assert (plain["perRender"]["width"], plain["perRender"]["height"]) == (640, 360)
    assert (uhd["perRender"]["width"], uhd["perRender"]["height"]) == (3840, 2160)
    assert uhd["canvas"]["source"].startswith("outputResolution landscape-4k")
    assert uhd["totalUsd"] > plain["totalUsd"]
    text = run("estimate", TEMPLATE, BATCH, "--output-resolution", "square")
    assert text.returncode == 0 and "1080x1080" in text.stdout
    bogus = run("estimate", TEMPLATE, BATCH, "--output-resolution", "8k")
    assert bogus.returncode == 2 and "landscape-4k" in bogus.stderr


def _scripted_project(tmp_path: Path) -> Path:
    project = tmp_path / "scripted"
    project.mkdir()
    (project / "index.html").write_text(
        '<html><body><div data-composition-id="main" data-width="640" data-height="360">'
        '<div class="t" data-start="0" data-duration="2"></div>'
        '<script src="https://cdn.example/gsap.min.js"></script></div></body></html>'
    )
    return project


def test_estimate_with_an_unknown_duration_says_cost_unknown_and_exits_1(tmp_path: Path) -> None:
    project = _scripted_project(tmp_path)
    result = run("estimate", project, BATCH)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("cost unknown: the root composition declares no data-duration")
    assert 'add data-duration="<seconds>"' in result.stdout and "Traceback" not in result.stderr
    as_json = run("estimate", project, BATCH, "--json")
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["known"] is False and data["totalUsd"] is None
    assert data["reason"].startswith("the root composition declares no data-duration")
    assert data["gate"]["status"] == "no-limit"
    gated = json.loads(run("estimate", project, BATCH, "--json", "--max-cost-usd", "100").stdout)
    assert gated["gate"]["status"] == "needs-approval"


def test_estimate_applies_the_cost_gate(tmp_path: Path) -> None:
    over = run("estimate", TEMPLATE, BATCH, "--max-cost-usd", "0.0000001")
    assert over.returncode == 1
    assert "exceeds max_cost_usd" in over.stdout and "4 renders, estimated $" in over.stdout
    under = run("estimate", TEMPLATE, BATCH, "--max-cost-usd", "1000", "--json")
    assert under.returncode == 0
    assert json.loads(under.stdout)["gate"]["status"] == "pass"
    for blank in ("", "None"):
        bad = run("estimate", TEMPLATE, BATCH, "--max-cost-usd", blank)
        assert bad.returncode == 2
        assert "leave the argument out to render without a cost limit" in bad.stderr


def test_missing_project_is_a_clear_error(tmp_path: Path) -> None:
    result = run("validate", tmp_path / "nope", BATCH)
    assert result.returncode == 2
    assert "nope" in result.stderr and "Traceback" not in result.stderr


def test_provider_is_registered_with_airflow() -> None:
    airflow = str(Path(sys.executable).with_name("airflow"))
    result = subprocess.run(
        [airflow, "providers", "list", "-o", "json"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    names = {p["package_name"] for p in json.loads(result.stdout)}
    assert "hyperframes-airflow" in names


def test_doctor_finds_a_missing_or_uncounting_pool_and_pools_fixes_it() -> None:
    from tests.airflow_helpers import ensure_db

    ensure_db()  # the suite's private SQLite Airflow home (AIRFLOW_HOME from conftest)
    airflow = str(Path(sys.executable).with_name("airflow"))
    pool = "hf_doctor_pool"
    missing = run("doctor", "--pool", pool)
    assert missing.returncode == 1
    assert f"pool '{pool}'" in missing.stdout and "--include-deferred" in missing.stdout

    subprocess.run(
        [airflow, "pools", "set", pool, "2", "no deferred"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    uncounted = run("doctor", "--pool", pool)
    assert uncounted.returncode == 1 and "does not count deferred" in uncounted.stdout

    fixed = run("pools", "--name", pool, "--slots", "3")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    exported = subprocess.run(
        [airflow, "pools", "get", pool, "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (got,) = json.loads(exported.stdout)
    assert int(got["slots"]) == 3 and str(got["include_deferred"]).lower() == "true"
    assert run("doctor", "--pool", pool).returncode == 0


def test_a_batch_path_that_is_no_file_is_one_clear_line(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    cases = {
        tmp_path: f"error: batch path is a directory, not a JSONL file: {tmp_path}\n",
        fifo: f"error: batch path is a FIFO (named pipe), not a JSONL file: {fifo}\n",
        tmp_path / "missing.jsonl": f"error: batch file not found: {tmp_path / 'missing.jsonl'}\n",
        Path("/dev/zero"): "error: batch path is a device, not a JSONL file: /dev/zero\n",
    }
    for command in ("validate", "estimate"):
        for batch, stderr in cases.items():
            result = subprocess.run(
                [CLI, command, str(TEMPLATE), str(batch)],
                capture_output=True,
                text=True,
                timeout=60,  # a FIFO opened for reading would block until then
                env=os.environ,
            )
            assert (result.returncode, result.stderr, result.stdout) == (2, stderr, ""), batch


def test_rerun_failed_writes_the_rows_that_did_not_succeed_from_the_original_batch(
    tmp_path: Path,
) -> None:
    batch = tmp_path / "batch.jsonl"
    rows = [
        {"outputKey": "v/ok.mp4", "variables": {"title": "Ada"}},
        {"outputKey": "v/failed.mp4", "variables": {"title": "Bruno", "accent": "#00ff00"}},
        {"outputKey": "v/timeout.mp4", "variables": {"title": "Chiara"}},
        {"outputKey": "v/changed-since.mp4"},
    ]
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows))
    statuses = ["succeeded", "failed", "timed-out", "aborted"]
    keys = ["v/ok.mp4", "v/failed.mp4", "v/timeout.mp4", "v/gone.mp4"]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "dagId": "d",
                "runId": "r1",
                "backend": "local",
                "batchSource": str(batch),
                "rows": [
                    {"inputLine": i + 1, "outputKey": key, "status": status}
                    for i, (key, status) in enumerate(zip(keys, statuses, strict=True))
                ],
            }
        )
    )
    out = tmp_path / "rows.jsonl"
    result = run("rerun-failed", manifest, "-o", out)
    assert result.returncode == 1, result.stderr  # line 4 no longer holds v/gone.mp4
    assert [json.loads(line) for line in out.read_text().splitlines()] == [rows[1], rows[2]]
    assert "wrote 2 of 3 row(s) that did not succeed in run r1" in result.stderr
    assert "line 4 [outputKey]: line 4 now holds outputKey 'v/changed-since.mp4'" in result.stdout
    # The manifest holds no variables: they come from the batch, which must be there.
    batch.unlink()
    missing = run("rerun-failed", manifest, "-o", out)
    assert missing.returncode == 2 and "batch file not found" in missing.stderr
