"""siteId must match the Node SDK byte for byte; the tarball must round-trip deterministically."""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path

import pytest

from hyperframes_airflow.contract.site import (
    SKIP_ROOT_ENTRIES,
    build_tarball,
    require_entry_file,
    site_id,
    site_key,
)


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _vector_tree(root: Path) -> None:
    """The §2.2 fixture, including the two root entries that must be skipped."""
    _write(root, "index.html", b'<!doctype html><html data-composition-id="x"></html>\n')
    _write(root, "style.css", b"body{}")
    _write(root, "a/b.txt", b"A")
    _write(root, "a-c/d.txt", b"C")
    _write(root, "assets/Z\u00e9.txt", "\u00c4".encode())
    _write(root, "assets/e.txt", b"e")
    _write(root, "assets/logo.png", bytes([0x89, 0x50, 0x4E, 0x47]))
    _write(root, "sub/output/k.txt", b"nested output kept")
    _write(root, "output", b"root output skipped")
    _write(root, "node_modules/x/j.js", b"junk")


def test_single_file_vector(tmp_path: Path) -> None:
    _write(tmp_path, "index.html", b"hi")
    assert site_id(tmp_path) == "9a86e90741176ce2"
    assert site_id(str(tmp_path)) == hashlib.sha256(b"index.html\x00hi").hexdigest()[:16]


def test_tree_vector_uses_per_directory_sort(tmp_path: Path) -> None:
    _vector_tree(tmp_path)
    assert site_id(tmp_path) == "d243f831ea5cf973"


def test_skipped_root_entries_do_not_change_the_id(tmp_path: Path) -> None:
    _vector_tree(tmp_path)
    for name in SKIP_ROOT_ENTRIES - {"output"}:  # the root file `output` is already there
        _write(tmp_path, f"{name}/junk.txt", b"x")
    assert site_id(tmp_path) == "d243f831ea5cf973"


def test_nested_skip_names_are_hashed(tmp_path: Path) -> None:
    _vector_tree(tmp_path)
    _write(tmp_path, "sub/node_modules/y.js", b"kept")
    assert site_id(tmp_path) != "d243f831ea5cf973"


def test_symlinks_and_empty_dirs_are_ignored(tmp_path: Path) -> None:
    _write(tmp_path, "index.html", b"hi")
    (tmp_path / "empty").mkdir()
    _write(tmp_path.parent / "outside", "target.txt", b"outside content")
    os.symlink(tmp_path.parent / "outside" / "target.txt", tmp_path / "link.txt")
    os.symlink(tmp_path.parent / "outside", tmp_path / "linkdir")
    os.symlink(tmp_path / "index.html", tmp_path / "self.html")
    assert site_id(tmp_path) == "9a86e90741176ce2"


def test_content_and_names_change_the_id(tmp_path: Path) -> None:
    _write(tmp_path, "index.html", b"hi")
    before = site_id(tmp_path)
    (tmp_path / "index.html").write_bytes(b"hi!")
    assert site_id(tmp_path) != before


def test_large_file_is_streamed(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    _write(tmp_path, "big.bin", data)
    expected = hashlib.sha256(b"big.bin\x00" + data).hexdigest()[:16]
    assert site_id(tmp_path) == expected


def test_not_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(
        NotADirectoryError, match=r"^\[deploySite\] projectDir is not a directory: "
    ):
        site_id(missing)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        site_id(f)
    assert str(info.value) == f"[deploySite] projectDir is not a directory: {f}"


def test_site_key() -> None:
    assert site_key("9a86e90741176ce2") == "sites/9a86e90741176ce2/project.tar.gz"


def test_require_entry_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"index\.html"):
        require_entry_file(tmp_path)
    _write(tmp_path, "index.html", b"hi")
    assert require_entry_file(tmp_path) == str(tmp_path / "index.html")
    with pytest.raises(FileNotFoundError, match=r"main\.html"):
        require_entry_file(tmp_path, "main.html")


def _files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def test_tarball_round_trip(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _vector_tree(project)
    (project / "empty").mkdir()
    os.symlink("index.html", project / "alias.html")
    (project / "run.sh").write_bytes(b"#!/bin/sh\n")
    (project / "run.sh").chmod(0o700)

    dest = tmp_path / "project.tar.gz"
    size = build_tarball(project, dest)
    assert size == dest.stat().st_size > 0
    assert dest.read_bytes()[:2] == b"\x1f\x8b"

    with tarfile.open(dest, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        out = tmp_path / "out"
        tar.extractall(out, filter="tar")

    assert not any(name.startswith(("./", "/")) for name in members)
    assert "output" not in members and "node_modules" not in members
    assert not any(name.startswith("node_modules/") for name in members)
    assert "sub/output/k.txt" in members
    assert members["empty"].isdir()
    assert members["alias.html"].issym() and members["alias.html"].linkname == "index.html"
    for m in members.values():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
    assert members["run.sh"].mode == 0o755
    assert members["index.html"].mode == 0o644

    expected = _files_under(project)
    del expected["output"], expected["node_modules/x/j.js"]
    assert _files_under(out) == expected
    assert (out / "alias.html").is_symlink()
    # The extracted tree hashes like the original (skipped entries never counted).
    assert site_id(out) == site_id(project)


def test_tarball_is_deterministic(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _vector_tree(project)
    first = tmp_path / "a.tar.gz"
    second = tmp_path / "b.tar.gz"
    build_tarball(project, first)
    os.utime(project / "index.html", (1, 1))  # mtimes must not matter
    build_tarball(project, second)
    assert first.read_bytes() == second.read_bytes()


def test_tarball_written_inside_project_skips_itself(tmp_path: Path) -> None:
    _write(tmp_path, "index.html", b"hi")
    dest = tmp_path / "project.tar.gz"
    build_tarball(tmp_path, dest)
    with tarfile.open(dest, "r:gz") as tar:
        assert tar.getnames() == ["index.html"]
