"""siteId must match the Node SDK byte for byte; the tarball must round-trip deterministically."""

from __future__ import annotations

import hashlib
import os
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest

from hyperframes_airflow.contract.site import (
    SKIP_ROOT_ENTRIES,
    UnsafeSiteEntry,
    build_tarball,
    copy_site,
    require_entry_file,
    site_entries,
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


def test_empty_dirs_are_ignored(tmp_path: Path) -> None:
    _write(tmp_path, "index.html", b"hi")
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
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
    for m in members.values():
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
    assert members["run.sh"].mode == 0o755
    assert members["index.html"].mode == 0o644

    expected = _files_under(project)
    del expected["output"], expected["node_modules/x/j.js"]
    assert _files_under(out) == expected
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


# --- symlinks and special files: one walk for the hash, the tarball and a copy -------------------


def _tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry below `root` (links would show as links): kind, mode bits, content."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if path.is_symlink():
            found[rel] = ("link", 0, os.readlink(path).encode())
        elif path.is_dir():
            found[rel] = ("dir", st.st_mode & 0o777, b"")
        else:
            found[rel] = ("file", st.st_mode & 0o777, path.read_bytes())
    return found


def _linked_project(root: Path) -> None:
    _write(root, "index.html", b"<html></html>")
    _write(root, "assets/logo.png", b"PNG")
    _write(root, "assets/fonts/a.woff", b"FONT")
    _write(root, "bin/run.sh", b"#!/bin/sh\n")
    (root / "bin" / "run.sh").chmod(0o700)
    os.symlink("assets/logo.png", root / "logo.png")  # to a file inside
    os.symlink("../assets", root / "bin" / "assets")  # to a folder inside
    os.symlink("run.sh", root / "bin" / "go")  # to an executable
    os.symlink("/etc/passwd", root / "node_modules")  # skipped at the root: never followed


def test_internal_links_count_as_what_they_point_to(tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    _linked_project(linked)
    # The same tree with the links replaced by real copies of their targets.
    plain = tmp_path / "plain"
    for rel, data in [
        ("index.html", b"<html></html>"),
        ("assets/logo.png", b"PNG"),
        ("assets/fonts/a.woff", b"FONT"),
        ("bin/run.sh", b"#!/bin/sh\n"),
        ("logo.png", b"PNG"),
        ("bin/assets/logo.png", b"PNG"),
        ("bin/assets/fonts/a.woff", b"FONT"),
        ("bin/go", b"#!/bin/sh\n"),
    ]:
        _write(plain, rel, data)
    assert site_id(linked) == site_id(plain)
    assert [e.rel for e in site_entries(linked)] == [e.rel for e in site_entries(plain)]

    # Editing a link target changes the id (Node's hashProjectDir would keep it: it skips links).
    before = site_id(linked)
    (linked / "assets" / "logo.png").write_bytes(b"PNG2")
    assert site_id(linked) != before


def test_hash_tarball_and_copy_agree(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _linked_project(project)
    (project / "empty").mkdir()
    _write(project, "output/render.mp4", b"skipped")

    tarball = tmp_path / "site.tar.gz"
    build_tarball(project, tarball)
    extracted = tmp_path / "extracted"
    with tarfile.open(tarball, "r:gz") as tar:
        assert not any(m.issym() or m.islnk() for m in tar.getmembers())
        tar.extractall(extracted, filter="tar")
    copied = tmp_path / "copied"
    size = copy_site(project, copied)

    assert _tree(extracted) == _tree(copied)
    tree = _tree(copied)
    assert not any(kind == "link" for kind, _, _ in tree.values())
    assert tree["bin/go"] == ("file", 0o755, b"#!/bin/sh\n")
    assert tree["logo.png"] == ("file", 0o644, b"PNG")
    assert tree["empty"][0] == "dir" and "output" not in tree and "node_modules" not in tree
    assert size == sum(len(data) for kind, _, data in tree.values() if kind == "file")
    assert site_id(copied) == site_id(extracted) == site_id(project)


def test_copy_site_needs_an_empty_destination_and_may_lie_in_a_skipped_folder(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "index.html", b"hi")
    busy = tmp_path / "output" / "busy"
    _write(busy, "x", b"x")
    with pytest.raises(FileExistsError, match="not empty"):
        copy_site(tmp_path, busy)
    inside = tmp_path / "output" / "site"
    assert copy_site(tmp_path, inside) == 2
    assert _tree(inside) == {"index.html": ("file", 0o644, b"hi")}


def _link_loop(p: Path) -> None:
    os.symlink("l2", p / "l1")
    os.symlink("l1", p / "l2")


def _fifo_under_skipped_output(p: Path) -> None:
    (p / "output").mkdir()
    os.mkfifo(p / "output" / "pipe")  # not walked itself (a skipped root folder)...
    os.symlink("output/pipe", p / "to-pipe")  # ...but a link may lead there


UNSAFE_ENTRIES: list[tuple[Any, str, str]] = [
    (lambda p: os.symlink("/etc/passwd", p / "a" / "pw"), "a/pw", "points outside the project"
     " (to /etc/passwd)"),
    (lambda p: os.symlink("/dev/zero", p / "zero"), "zero", "points outside the project"
     " (to /dev/zero)"),
    (lambda p: os.symlink("..", p / "a" / "up"), "a/up", 'points to "..", a folder that'
     " contains it"),
    (lambda p: os.symlink(".", p / "self"), "self", 'points to ".", a folder that contains it'),
    (lambda p: os.symlink("nowhere", p / "gone"), "gone", 'is dangling: its target "nowhere"'
     " does not exist"),
    (_link_loop, "l1", "is part of a symlink loop"),
    (lambda p: os.mkfifo(p / "a" / "pipe"), "a/pipe", "is a FIFO (named pipe)"),
    (_fifo_under_skipped_output, "to-pipe", "points to a FIFO (named pipe)"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "name", "reason"), UNSAFE_ENTRIES)
def test_unsafe_entries_are_refused_everywhere_naming_the_entry(
    tmp_path: Path, make: Any, name: str, reason: str
) -> None:
    project = tmp_path / "p"
    _write(project, "index.html", b"hi")
    (project / "a").mkdir()
    make(project)
    for run in (
        lambda: site_id(project),
        lambda: build_tarball(project, tmp_path / "t.tar.gz"),
        lambda: copy_site(project, tmp_path / "copy"),
    ):
        with pytest.raises(UnsafeSiteEntry) as caught:
            run()
        assert isinstance(caught.value, ValueError)
        message = str(caught.value)
        assert f'"{name}" {reason}' in message, message
    assert not (tmp_path / "t.tar.gz").exists() and not (tmp_path / "copy").exists()


@pytest.mark.timeout(10)
def test_a_socket_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "index.html", b"hi")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s"))
        with pytest.raises(UnsafeSiteEntry, match='"s" is a socket'):
            site_id(tmp_path)
    finally:
        sock.close()


def test_a_deep_tree_is_walked_without_recursion(tmp_path: Path) -> None:
    _write(tmp_path, "index.html", b"hi")
    levels = 1200  # deeper than Python's recursion limit
    deep = tmp_path
    for _ in range(levels):
        deep = deep / "d"
        deep.mkdir()
    (deep / "leaf.txt").write_bytes(b"x")
    try:
        files = [e.rel for e in site_entries(tmp_path) if not e.is_dir]
        assert files == ["d/" * levels + "leaf.txt", "index.html"]  # "d" sorts first
        assert len(site_id(tmp_path)) == 16
    finally:  # pytest's own clean-up (shutil.rmtree) recurses, so remove the tree bottom-up
        (deep / "leaf.txt").unlink()
        for _ in range(levels):
            deep.rmdir()
            deep = deep.parent
