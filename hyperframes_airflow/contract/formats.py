"""Output formats and the file extension each one writes: the one table the core shares.

Same table as the SDK's `formatExtension.ts` (contract §3.1): a png-sequence output has no
extension because the object is a gzip tar of the frame directory.
"""

from __future__ import annotations

from typing import Final

from hyperframes_airflow.contract.config import Format

__all__ = ["FORMAT_EXTENSIONS", "VIDEO_EXTENSIONS", "Format", "format_extension"]

FORMAT_EXTENSIONS: Final[dict[str, str]] = {
    "mp4": ".mp4",
    "mov": ".mov",
    "webm": ".webm",
    "png-sequence": "",
}
#: The extensions of the video formats: a png-sequence key must not end with one of them.
VIDEO_EXTENSIONS: Final[tuple[str, ...]] = tuple(ext for ext in FORMAT_EXTENSIONS.values() if ext)


def format_extension(format: str) -> str:
    """Output file extension per `formatExtension.ts`; png-sequence outputs have none."""
    try:
        return FORMAT_EXTENSIONS[format]
    except KeyError:
        raise ValueError(
            f"unknown format {format!r}; expected one of {', '.join(FORMAT_EXTENSIONS)}"
        ) from None
