"""Where a value from a trigger form may point: under an allowed root, or nowhere.

A DAG author's own paths are trusted; a value that came through a template (a trigger form, a
run conf) is not: `project_dir=/etc` would upload /etc to the render bucket, and
`manifest_path=/var/lib/...` would write anywhere the worker can. Such values must fall under
one of the allowed roots: local paths after resolving symlinks and `..`, URIs by scheme,
bucket and key prefix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = [
    "ENV_ALLOWED_ROOTS",
    "NotUnderAllowedRoot",
    "check_under_roots",
    "is_template",
    "under_roots",
]

#: Extra allowed roots for every batch on this deployment, separated by commas.
ENV_ALLOWED_ROOTS = "HYPERFRAMES_ALLOWED_ROOTS"


class NotUnderAllowedRoot(ValueError):
    """A templated path or URI outside every allowed root."""


def is_template(value: object) -> bool:
    """True for a value Airflow will render (a Jinja expression or block)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _split(value: str) -> tuple[str, str]:
    """(scheme, location): local paths resolved, URIs kept with a normalised prefix."""
    parts = urlsplit(value)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme == "file" else value
        return "file", os.path.realpath(os.path.expanduser(path))
    location = f"{parts.netloc}/{parts.path.lstrip('/')}"
    return parts.scheme, location


def _within(child: str, parent: str, scheme: str) -> bool:
    if scheme == "file":
        return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)
    parent = parent if parent.endswith("/") else parent + "/"
    return child == parent.rstrip("/") or child.startswith(parent)


def under_roots(value: str, roots: Iterable[str]) -> bool:
    """True when `value` (a path or URI) is one of `roots` or inside one."""
    scheme, location = _split(value)
    for root in roots:
        if not root:
            continue
        root_scheme, root_location = _split(root)
        if root_scheme == scheme and _within(location, root_location, scheme):
            return True
    return False


def check_under_roots(value: str, roots: Iterable[str], *, field: str) -> None:
    """Raise `NotUnderAllowedRoot` naming the field, the value and how to allow it."""
    listed = [r for r in roots if r]
    if under_roots(value, listed):
        return
    allowed = ", ".join(listed) if listed else "none"
    raise NotUnderAllowedRoot(
        f"{field} {value!r} came from a template (trigger form or run conf) and is not under an "
        f"allowed root (allowed: {allowed}); add its root to render_batch(allowed_roots=...) "
        f"or to ${ENV_ALLOWED_ROOTS}"
    )
