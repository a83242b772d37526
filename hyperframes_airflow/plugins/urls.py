"""Where the batch view lives: its URL prefix under the api-server, after `[api] base_url`."""

from __future__ import annotations

from urllib.parse import urlparse

__all__ = ["URL_PREFIX", "base_path"]

#: The app's mount point (not one of Airflow's reserved prefixes: /api/v2, /ui, /auth...).
URL_PREFIX = "/hyperframes"


def base_path() -> str:
    """The path of `[api] base_url` (e.g. `/airflow`), which every URL we hand out starts with."""
    from airflow.configuration import conf

    return urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
