"""The local render backend, end to end: real `hyperframes render` runs checked with ffprobe.

Render tests are `slow` and need the toolchain from `scripts/install-renderer.sh`; without it they
skip, or fail under the project's test command (`tests.requirements`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hyperframes_airflow.backends.local_cli import (
    HYPERFRAMES_CLI_VERSION,
    INSTALL_COMMAND,
    MARKER_ENV,
    LocalRenderError,
    LocalRenderResult,
    LocalRenderTimeout,
    Toolchain,
    clean_line,
    failure_message,
    find_toolchain,
    frame_rgb,
    group_members,
    kill_process_group,
    marked_processes,
    probe_video,
    render_local,
    render_marker,
)
from tests.requirements import render_toolchain

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "examples" / "templates" / "welcome"
BATCH = REPO / "examples" / "batches" / "welcome.jsonl"
ACCENT_XY = (16, 16)  # the template's full-frame accent background, outside the card
TOLERANCE = 12  # yuv420p + limited range round trip


# ------------------------------------------------------------------------------------------
# Fixtures and helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toolchain() -> Toolchain:
    return render_toolchain()


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in BATCH.read_text().splitlines() if line.strip()]


def _hex_rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _close(a: tuple[int, int, int], b: tuple[int, int, int], tol: int = TOLERANCE) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class TreeWatcher:
    """Samples every process of one render (found by its cookie) while it runs."""

    pid: int | None = None
    marker: str | None = None
    cmdlines: dict[int, str] = field(default_factory=dict)
    first_cmdline: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def on_start(self, pid: int) -> None:
        """Called by render_local right after spawn, as an Airflow operator would be."""
        self.pid = pid
        deadline = time.monotonic() + 2  # /proc/<pid>/cmdline reads empty until exec settles
        while not self.first_cmdline and time.monotonic() < deadline:
            self.first_cmdline = _cmdline(pid)
            time.sleep(0.01)
        self.marker = render_marker(pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set() and self.marker:
            for p in marked_processes(self.marker):
                if p not in self.cmdlines and (cmd := _cmdline(p)):
                    self.cmdlines[p] = cmd
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def saw_chrome(self) -> bool:
        return any("chrom" in c for c in self.cmdlines.values())

    def wait_for_chrome(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.saw_chrome():
                return True
            time.sleep(0.1)
        return False


@dataclass
class Rendered:
    row: dict[str, Any]
    result: LocalRenderResult
    progress: list[str]
    watcher: TreeWatcher


def _assert_no_processes_left(pid: int, marker: str) -> None:
    # The CLI's own process group (node + ffmpeg) is gone...
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    # ...and so is everything else of the render: Chrome runs in its *own* session, so the
    # group check alone would pass even with an orphaned browser.
    assert marked_processes(marker) == []


@pytest.fixture(scope="module")
def template_listing() -> list[str]:
    return sorted(str(p.relative_to(TEMPLATE)) for p in TEMPLATE.rglob("*"))


@pytest.fixture(scope="module")
def rendered(
    toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory, template_listing: list[str]
) -> dict[str, Rendered]:
    """Two rows of the example batch with different titles and accents, rendered for real."""
    out_root = tmp_path_factory.mktemp("local-out")
    rows = {r["outputKey"].rsplit("/", 1)[-1]: r for r in _rows()}
    done: dict[str, Rendered] = {}
    for name in ("ada.mp4", "bruno.mp4"):
        row = rows[name]
        progress: list[str] = []
        watcher = TreeWatcher()
        try:
            result = render_local(
                toolchain=toolchain,
                project_dir=TEMPLATE,
                output_path=out_root / row["outputKey"],
                variables=row["variables"],
                fps=None,
                quality=None,
                timeout_s=240,
                on_progress=progress.append,
                on_start=watcher.on_start,
            )
        finally:
            watcher.stop()
        print(
            f"\n[local render] {row['outputKey']}: {result.render_seconds:.1f} s wall, "
            f"CLI 'rendered in' {result.cli_render_seconds} s, {result.bytes} bytes"
        )
        done[name] = Rendered(row, result, progress, watcher)
    return done


# ------------------------------------------------------------------------------------------
# Real renders
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_rows_render_to_h264_640x360_2s(rendered: dict[str, Rendered]) -> None:
    for item in rendered.values():
        result = item.result
        assert result.output_path.is_file()
        assert result.bytes == result.output_path.stat().st_size > 0
        info = probe_video(result.output_path)
        assert info["codec_name"] == "h264"
        assert (info["width"], info["height"]) == (640, 360)
        assert info["pix_fmt"] == "yuv420p"
        assert info["duration"] == pytest.approx(2.0, abs=0.1)
        assert info["nb_frames"] == 60
        assert (result.width, result.height, result.codec) == (640, 360, "h264")
        assert result.frames == 60
        assert result.duration_s == pytest.approx(2.0, abs=0.1)
        assert result.render_seconds > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_accent_pixel_follows_each_rows_variable(rendered: dict[str, Rendered]) -> None:
    colours = {}
    for name, item in rendered.items():
        expected = _hex_rgb(item.row["variables"]["accent"])
        for at in (0.1, 1.0, 1.9):
            got = frame_rgb(item.result.output_path, at, *ACCENT_XY)
            assert _close(got, expected), f"{name} at {at}s: {got} != accent {expected}"
        colours[name] = frame_rgb(item.result.output_path, 1.0, *ACCENT_XY)
    a, b = colours.values()
    assert not _close(a, b), f"both rows rendered the same accent {a}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_frame_differs(rendered: dict[str, Rendered]) -> None:
    """The template's motion is seeked per frame: no two consecutive frames are identical."""
    path = rendered["ada.mp4"].result.output_path
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    digests = [line.rsplit(",", 1)[-1].strip() for line in out.splitlines() if line[:1].isdigit()]
    assert len(digests) == 60
    assert all(a != b for a, b in itertools.pairwise(digests))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_variables_never_appear_in_any_argv(rendered: dict[str, Rendered]) -> None:
    for item in rendered.values():
        watcher = item.watcher
        assert watcher.pid is not None and watcher.marker
        assert "--variables-file" in watcher.first_cmdline
        assert watcher.saw_chrome(), "sampler never saw Chrome: the check would prove nothing"
        secrets = [str(v) for v in item.row["variables"].values() if len(str(v)) > 3]
        secrets.append(json.dumps(item.row["variables"]))
        for pid, cmd in watcher.cmdlines.items():
            for secret in secrets:
                assert secret not in cmd, f"variable value {secret!r} in argv of pid {pid}"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_progress_lines_are_few_and_meaningful(rendered: dict[str, Rendered]) -> None:
    for item in rendered.values():
        progress = item.progress
        assert progress, "no progress reported"
        assert all(re.match(r"^\d{1,3}% \S", line) for line in progress), progress
        assert progress[-1].startswith("100% ")
        assert len(progress) <= 2 + item.result.render_seconds / 2 + 1  # ~one per 2 s
        percents = [int(line.split("%", 1)[0]) for line in progress]
        assert percents == sorted(percents)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_render_leaves_no_partials_and_does_not_touch_the_template(
    rendered: dict[str, Rendered], template_listing: list[str]
) -> None:
    out_dir = rendered["ada.mp4"].result.output_path.parent
    assert sorted(p.name for p in out_dir.iterdir()) == ["ada.mp4", "bruno.mp4"]
    # The CLI writes .hyperframes/video-state.json into the project it renders; we render a
    # snapshot so the template (and so its siteId) stays as it was.
    assert sorted(str(p.relative_to(TEMPLATE)) for p in TEMPLATE.rglob("*")) == template_listing
    for item in rendered.values():
        assert item.watcher.pid is not None and item.watcher.marker
        _assert_no_processes_left(item.watcher.pid, item.watcher.marker)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bad_variable_type_fails_with_the_clis_one_line_message(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    output = tmp_path / "bad.mp4"
    started = time.monotonic()
    with pytest.raises(LocalRenderError) as caught:
        render_local(
            toolchain=toolchain,
            project_dir=TEMPLATE,
            output_path=output,
            variables={"title": 42},
            fps=None,
            quality=None,
            timeout_s=60,
        )
    err = caught.value
    assert not isinstance(err, LocalRenderTimeout)
    assert str(err) == 'Variable "title" expected string, got number.'
    assert err.returncode == 1
    assert err.log_tail and len(err.log_tail) <= 50
    assert not output.exists() and list(tmp_path.iterdir()) == []
    assert time.monotonic() - started < 30  # refused before Chrome renders anything


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_broken_composition_fails_with_the_clis_reason(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    project = tmp_path / "broken"
    project.mkdir()
    # No data-duration and no timeline: the runtime reports a zero-length composition.
    (project / "index.html").write_text(
        '<!doctype html><html><body><div id="stage" data-composition-id="x" data-start="0" '
        'data-width="320" data-height="180" data-no-timeline><p>x</p></div></body></html>'
    )
    with pytest.raises(LocalRenderError) as caught:
        render_local(
            toolchain=toolchain,
            project_dir=project,
            output_path=tmp_path / "out" / "broken.mp4",
            variables={},
            fps=None,
            quality=None,
            timeout_s=120,
        )
    message = str(caught.value)
    assert message == "Render failed: [FrameCapture] Composition has zero duration.", message
    assert "\n" not in message
    assert any("zero duration" in line for line in caught.value.log_tail)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_missing_index_html_fails_fast(toolchain: Toolchain, tmp_path: Path) -> None:
    project = tmp_path / "empty"
    project.mkdir()
    with pytest.raises(LocalRenderError) as caught:
        render_local(
            toolchain=toolchain,
            project_dir=project,
            output_path=tmp_path / "x.mp4",
            variables={},
            fps=None,
            quality=None,
            timeout_s=60,
        )
    assert str(caught.value).startswith("No composition found in ")
    assert str(caught.value).endswith(": No index.html file found.")


def _long_template(tmp_path: Path, seconds: int = 60) -> Path:
    project = tmp_path / "long"
    project.mkdir()
    html = (TEMPLATE / "index.html").read_text()
    assert 'data-duration="2"' in html
    (project / "index.html").write_text(
        html.replace('data-duration="2"', f'data-duration="{seconds}"')
    )
    return project


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_timeout_kills_the_whole_tree(toolchain: Toolchain, tmp_path: Path) -> None:
    project = _long_template(tmp_path)  # ~60 s of capture: cannot finish in time
    watcher = TreeWatcher()
    output = tmp_path / "out" / "late.mp4"
    started = time.monotonic()
    try:
        with pytest.raises(LocalRenderTimeout) as caught:
            render_local(
                toolchain=toolchain,
                project_dir=project,
                output_path=output,
                variables={"title": "Too long"},
                fps=None,
                quality=None,
                timeout_s=12,
                on_start=watcher.on_start,
            )
    finally:
        watcher.stop()
    elapsed = time.monotonic() - started
    assert caught.value.timeout_s == 12
    assert 12 <= elapsed < 12 + 30
    assert watcher.pid is not None and watcher.marker
    assert watcher.saw_chrome(), "Chrome never started within the timeout: test inconclusive"
    _assert_no_processes_left(watcher.pid, watcher.marker)
    assert list(output.parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_process_group_from_another_thread_stops_render(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    """What an Airflow `on_kill` does: kill by the pid `on_start` reported, once Chrome is up."""
    project = _long_template(tmp_path)
    watcher = TreeWatcher()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            render_local(
                toolchain=toolchain,
                project_dir=project,
                output_path=tmp_path / "out" / "killed.mp4",
                variables={},
                fps=None,
                quality=None,
                timeout_s=150,
                on_start=watcher.on_start,
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert watcher.wait_for_chrome(60), "Chrome never started"
        assert watcher.pid is not None and watcher.marker
        started = time.monotonic()
        assert kill_process_group(watcher.pid) is True
        kill_seconds = time.monotonic() - started
        thread.join(timeout=60)
    finally:
        watcher.stop()
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], LocalRenderError)
    assert not isinstance(errors[0], LocalRenderTimeout)
    assert "cancel" in str(errors[0]).lower(), str(errors[0])
    assert kill_seconds < 10, "SIGTERM should be enough: the CLI closes Chrome itself"
    _assert_no_processes_left(watcher.pid, watcher.marker)
    assert kill_process_group(watcher.pid) is False  # idempotent


# ------------------------------------------------------------------------------------------
# Fast checks (no render)
# ------------------------------------------------------------------------------------------


def test_example_batch_is_four_rows_and_one_uses_the_default_accent() -> None:
    rows = _rows()
    assert len(rows) == 4
    assert len({r["outputKey"] for r in rows}) == 4
    assert all(r["outputKey"].startswith("videos/welcome/") for r in rows)
    assert sum("accent" not in r["variables"] for r in rows) == 1
    assert len({r["variables"]["title"] for r in rows}) == 4


def test_find_toolchain_reports_missing_cli_with_the_fix(tmp_path: Path) -> None:
    toolchain = find_toolchain(tmp_path)
    assert toolchain.cli_js is None
    problems = dict(toolchain.problems())
    what = next(w for w in problems if "hyperframes CLI" in w)
    assert problems[what] == INSTALL_COMMAND


def test_find_toolchain_reports_version_mismatch(tmp_path: Path) -> None:
    package = tmp_path / "node_modules" / "hyperframes"
    (package / "bin").mkdir(parents=True)
    (package / "bin" / "hyperframes.mjs").write_text("")
    (package / "package.json").write_text(
        json.dumps({"version": "0.0.1", "bin": {"hyperframes": "./bin/hyperframes.mjs"}})
    )
    toolchain = find_toolchain(tmp_path)
    assert toolchain.cli_js == package / "bin" / "hyperframes.mjs"
    assert any(
        "0.0.1" in what and HYPERFRAMES_CLI_VERSION in what for what, _ in toolchain.problems()
    )


def test_browser_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERFRAMES_BROWSER_PATH", str(tmp_path / "nope"))
    toolchain = find_toolchain(tmp_path)
    assert toolchain.chromium is None
    assert any("HYPERFRAMES_BROWSER_PATH" in what for what, _ in toolchain.problems())


def test_env_puts_node_first_and_turns_off_telemetry_and_updates() -> None:
    toolchain = Toolchain(
        renderer_home=Path("/r"),
        node=Path("/r/node/bin/node"),
        node_version=(22, 23, 5),
        cli_js=Path("/r/cli.mjs"),
        cli_version=HYPERFRAMES_CLI_VERSION,
        chromium=Path("/usr/lib/chromium/chromium"),
        ffmpeg=Path("/usr/bin/ffmpeg"),
        ffprobe=Path("/usr/bin/ffprobe"),
    )
    env = toolchain.env({"PATH": "/usr/bin", "HYPERFRAMES_STDOUT_IS_TTY": "1"})
    assert env["PATH"].split(os.pathsep)[0] == "/r/node/bin"
    assert env["HYPERFRAMES_BROWSER_PATH"] == "/usr/lib/chromium/chromium"
    for key in ("HYPERFRAMES_NO_TELEMETRY", "DO_NOT_TRACK", "HYPERFRAMES_NO_UPDATE_CHECK"):
        assert env[key] == "1"
    assert "HYPERFRAMES_STDOUT_IS_TTY" not in env
    assert toolchain.problems() == []


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            [
                "◆  Rendering welcome → /tmp/x.mp4",
                "Variable issue (1) — values may not render as expected:",
                '  Variable "title" expected string, got number.',
                "✗  Variable validation failed",
                "   Aborting render due to variable issues (--strict-variables mode).",
            ],
            'Variable "title" expected string, got number.',
        ),
        (
            [
                "[BrowserManager] Browser launched",
                "  ██████░░░░░░░░░░░░░░░░░░░  26%  Render cancelled",
                "✗  Render failed",
                "",
                "   render_cancelled",
                "   Try --docker for containerized rendering",
            ],
            "Render failed: render_cancelled",
        ),
        (["", "✗  Not a directory: /tmp/nope", ""], "Not a directory: /tmp/nope"),
        (
            ["HyperFrames requires Node.js >= 22 (current: 20.20.2). Switch Node versions."],
            "HyperFrames requires Node.js >= 22 (current: 20.20.2). Switch Node versions.",
        ),
        (["[INFO] noise only"], "hyperframes render exited with code 3"),
        # Dying without an error line (OOM): its last warning quotes the composition's text,
        # i.e. a variable value; it must never become the row's cause.
        (
            ['  Lint: text "Ada Lovelace" overflows #title', "capture 40%"],
            "hyperframes render exited with code 3",
        ),
    ],
)
def test_failure_message_picks_the_meaningful_line(output: list[str], expected: str) -> None:
    assert failure_message(output, 3) == expected


def test_a_render_killed_without_an_error_line_says_so_and_quotes_nothing() -> None:
    lines = ['  Lint: text "Ada Lovelace" overflows #title', "Streaming frame 7/60"]
    message = failure_message(lines, -9)
    assert message.startswith("hyperframes render was killed by SIGKILL")
    assert "Ada" not in message


def test_clean_line_strips_ansi_and_spinner_redraws() -> None:
    raw = "\x1b[?25l\u2502\r\n"
    assert clean_line(raw) == "\u2502"
    assert clean_line("\u25d2  Checking browser\x1b[1G\x1b[J\u25c7  Browser: env\n") == (
        "\u25d2  Checking browser\u25c7  Browser: env"
    )


def test_kill_process_group_leaves_foreign_processes_alone() -> None:
    """A pid that is not a render (e.g. reused after a crash) is never signalled."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:
        assert kill_process_group(proc.pid, grace_s=0.5) is False
        time.sleep(0.2)
        assert proc.poll() is None
        assert group_members(proc.pid) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_kill_process_group_kills_escaped_children() -> None:
    """A child that started its own session (as Chrome does) dies with the render's cookie."""
    marker = "test-" + os.urandom(6).hex()
    env = {**os.environ, MARKER_ENV: marker}
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(marked_processes(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        escaped = [p for p in marked_processes(marker) if p != proc.pid]
        assert escaped and all(p not in group_members(proc.pid) for p in escaped)
        assert kill_process_group(proc.pid, grace_s=1.0) is True
        proc.wait(timeout=5)
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)
        assert marked_processes(marker) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
