"""Naming what kind of file a path is, for messages that refuse it (batch sources, sites)."""

from __future__ import annotations

import stat

__all__ = ["file_kind"]


def file_kind(mode: int) -> str:
    """`st_mode` as a phrase: "a regular file", "a directory", "a FIFO (named pipe)", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"
