"""Checking what a render produced with ffprobe/ffmpeg (measured, not taken on trust)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from hyperframes_airflow.backends.local_cli.errors import LocalRenderError
from hyperframes_airflow.backends.local_cli.toolchain import _find_tool


def probe_video(path: Path, *, ffprobe: Path | str | None = None) -> dict[str, Any]:
    """First video stream's codec_name, width, height, nb_frames, duration (s), pix_fmt."""
    exe = str(ffprobe or _find_tool("ffprobe", "HYPERFRAMES_FFPROBE_PATH") or "ffprobe")
    proc = subprocess.run(
        [
            exe,
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_frames,duration,pix_fmt,r_frame_rate"
            ":format=duration,format_name",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise LocalRenderError(f"ffprobe failed on {path}: {proc.stderr.strip()[:300]}")
    data = json.loads(proc.stdout or "{}")
    streams = data.get("streams") or [{}]
    stream, fmt = streams[0], data.get("format") or {}
    duration = _to_float(stream.get("duration")) or _to_float(fmt.get("duration"))
    return {
        "codec_name": stream.get("codec_name"),
        "width": _to_int(stream.get("width")),
        "height": _to_int(stream.get("height")),
        "nb_frames": _to_int(stream.get("nb_frames")),
        "duration": duration,
        "pix_fmt": stream.get("pix_fmt"),
        "r_frame_rate": stream.get("r_frame_rate"),
        "format_name": fmt.get("format_name"),
    }


def frame_rgb(
    path: Path, at_s: float, x: int, y: int, *, ffmpeg: Path | str | None = None
) -> tuple[int, int, int]:
    """The RGB colour of pixel (x, y) in the frame at `at_s` seconds (decoded as rgb24)."""
    exe = str(ffmpeg or _find_tool("ffmpeg", "HYPERFRAMES_FFMPEG_PATH") or "ffmpeg")
    proc = subprocess.run(
        [
            exe,
            "-v",
            "error",
            "-ss",
            f"{at_s:.3f}",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-vf",
            f"format=rgb24,crop=1:1:{int(x)}:{int(y)}",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0 or len(proc.stdout) < 3:
        err = proc.stderr.decode(errors="replace").strip()[:300]
        raise LocalRenderError(
            f"ffmpeg could not read pixel ({x}, {y}) at {at_s}s of {path}: {err}"
        )
    r, g, b = proc.stdout[:3]
    return r, g, b


def _to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _to_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def poster_frame(
    video: Path,
    target: Path,
    *,
    at_s: float,
    width: int = 320,
    ffmpeg: Path | str | None = None,
) -> Path:
    """Write a JPEG poster frame of `video` (the frame at `at_s`, `width` px wide) to `target`,
    atomically; the batch page shows it as the row's thumbnail."""
    exe = str(ffmpeg or _find_tool("ffmpeg", "HYPERFRAMES_FFMPEG_PATH") or "ffmpeg")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial.jpg")
    proc = subprocess.run(
        [
            exe,
            "-v",
            "error",
            "-y",
            "-ss",
            f"{max(at_s, 0.0):.3f}",
            "-i",
            str(video),
            "-frames:v",
            "1",
            "-vf",
            f"scale={int(width)}:-2",
            "-q:v",
            "4",
            str(partial),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        err = proc.stderr.decode(errors="replace").strip()[:300]
        raise LocalRenderError(f"ffmpeg could not take a poster frame of {video.name}: {err}")
    partial.replace(target)
    return target
