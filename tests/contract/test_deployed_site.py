"""Reading a deployed site's composition from its project.tar.gz, streamed (real tarballs)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import BinaryIO

import pytest

from hyperframes_airflow.contract.composition import Composition, read_composition
from hyperframes_airflow.contract.deployed_site import (
    DEFAULT_MAX_ENTRY_BYTES,
    SITE_ID_RULE,
    DeployedSiteError,
    read_composition_from_tarball,
    validate_site_id,
)
from hyperframes_airflow.contract.site import build_tarball

TITLE = {"id": "title", "type": "string", "label": "Headline", "default": "Welcome"}
INDEX = (
    f"<!doctype html><html data-composition-id='promo' "
    f"data-composition-variables='{json.dumps([TITLE])}'><body>"
    '<div data-composition-id="promo" data-width="1280" data-height="720" data-fps="24">'
    '<div data-start="0" data-duration="2.5"></div></div></body></html>\n'
)


def _project(root: Path, index: str = INDEX) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text(index, encoding="utf-8")
    (root / "assets").mkdir(exist_ok=True)
    (root / "assets" / "logo.png").write_bytes(os.urandom(2048))
    (root / "style.css").write_text("body{}")
    return root


def _dot_tarball(project: Path, dest: Path) -> Path:
    """What node-tar's `tar.create({gzip: true, cwd}, ["."])` makes: `./`-prefixed names."""
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(project, arcname=".")
    return dest


class CountingReader(io.RawIOBase):
    """A real file, counting the bytes the reader pulls from it."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = self._file.readinto(buffer)
        self.bytes_read += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


def _read(path: Path, entry: str = "index.html", **kwargs: int) -> Composition:
    with path.open("rb") as handle:
        return read_composition_from_tarball(handle, entry, **kwargs)


# --- reading the entry --------------------------------------------------------------------


def test_a_build_tarball_site_reads_like_its_project_dir(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    tarball = tmp_path / "project.tar.gz"
    build_tarball(project, tarball)
    with tarball.open("rb") as handle:
        comp = read_composition_from_tarball(handle)
    assert comp == read_composition(project)
    assert comp.composition_id == "promo" and [v.id for v in comp.variables] == ["title"]
    assert (comp.duration_s, comp.width, comp.height, comp.fps) == (2.5, 1280, 720, 24)


def test_dot_slash_member_names_as_node_tar_writes_them(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    tarball = _dot_tarball(project, tmp_path / "project.tar.gz")
    with tarfile.open(tarball) as tar:
        assert "./index.html" in tar.getnames()
    assert _read(tarball) == read_composition(project)


def test_another_entry_file(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    (project / "site").mkdir()
    (project / "site" / "main.html").write_text(
        '<html><body><div data-composition-id="m" data-duration="9"></div></body></html>'
    )
    tarball = _dot_tarball(project, tmp_path / "project.tar.gz")
    comp = _read(tarball, entry="site/main.html")
    assert comp.duration_s == 9.0
    assert _read(tarball, entry="./site/main.html") == comp


def test_it_stops_at_the_entry_and_never_reads_the_rest(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    tarball = tmp_path / "big.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(project / "index.html", arcname="./index.html")
        big = tarfile.TarInfo("./assets/film.mp4")
        payload = os.urandom(8 * 1024 * 1024)  # incompressible: the archive stays ~8 MiB
        big.size = len(payload)
        tar.addfile(big, io.BytesIO(payload))
    reader = CountingReader(tarball)
    with io.BufferedReader(reader) as handle:
        comp = read_composition_from_tarball(handle)
    assert comp.duration_s == 2.5
    assert reader.bytes_read < 512 * 1024 < tarball.stat().st_size
    # Cut the archive just after the entry: a truncated tail is never reached.
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tarball.read_bytes()[: 256 * 1024])
    assert _read(cut).duration_s == 2.5


def test_nothing_is_extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(tmp_path / "project")
    tarball = _dot_tarball(project, tmp_path / "project.tar.gz")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    _read(tarball)
    assert list(work.iterdir()) == []


# --- what it refuses ----------------------------------------------------------------------


def test_a_missing_entry_names_it(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    (project / "index.html").unlink()
    tarball = _dot_tarball(project, tmp_path / "project.tar.gz")
    with pytest.raises(DeployedSiteError, match=r"index\.html") as info:
        _read(tarball)
    assert info.value.entry == "index.html" and info.value.kind == "missing"
    with pytest.raises(DeployedSiteError, match=r"other\.html"):
        _read(tarball, entry="other.html")


def test_not_a_gzip_tar(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(_project(tmp_path / "project"), arcname=".")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"<html>this is not an archive</html>")
    gz_not_tar = tmp_path / "text.gz"
    gz_not_tar.write_bytes(gzip.compress(b"hello " * 1000))
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(b"")
    for path in (plain, junk, gz_not_tar, empty):
        with pytest.raises(DeployedSiteError, match=r"index\.html") as info:
            _read(path)
        assert info.value.kind == "unreadable", path


def test_a_truncated_archive_names_the_entry(tmp_path: Path) -> None:
    noise = os.urandom(300 * 1024).hex()  # an index.html that barely compresses
    project = _project(tmp_path / "project", INDEX.replace("<body>", f"<body><!-- {noise} -->"))
    tarball = tmp_path / "project.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(project / "index.html", arcname="index.html")
        tar.add(project / "style.css", arcname="style.css")
    data = tarball.read_bytes()
    for cut in (len(data) // 2, 100, 12):
        truncated = tmp_path / f"cut{cut}.tar.gz"
        truncated.write_bytes(data[:cut])
        with pytest.raises(DeployedSiteError, match=r"index\.html") as info:
            _read(truncated)
        assert info.value.kind == "unreadable"
        assert "truncated" in str(info.value) or "not a gzip" in str(info.value), str(info.value)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_a_linked_entry_is_refused(tmp_path: Path, kind: bytes) -> None:
    tarball = tmp_path / "links.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        real = tarfile.TarInfo("./real.html")
        real.size = len(INDEX)
        tar.addfile(real, io.BytesIO(INDEX.encode()))
        link = tarfile.TarInfo("./index.html")
        link.type = kind
        link.linkname = "real.html" if kind == tarfile.SYMTYPE else "./real.html"
        tar.addfile(link)
    with pytest.raises(DeployedSiteError, match=r"index\.html.*link") as info:
        _read(tarball)
    assert info.value.kind == "not-a-file"


def test_a_directory_entry_is_refused(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "index.html").mkdir(parents=True)
    tarball = _dot_tarball(project, tmp_path / "project.tar.gz")
    with pytest.raises(DeployedSiteError, match=r"index\.html") as info:
        _read(tarball)
    assert info.value.kind == "not-a-file"


def test_an_entry_over_the_cap_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path / "project")
    tarball = _dot_tarball(project, tmp_path / "project.tar.gz")
    size = (project / "index.html").stat().st_size
    assert _read(tarball, max_entry_bytes=size).duration_s == 2.5
    with pytest.raises(DeployedSiteError, match=rf"index.html.*{size} bytes") as info:
        _read(tarball, max_entry_bytes=size - 1)
    assert info.value.kind == "too-large"
    assert DEFAULT_MAX_ENTRY_BYTES == 8 * 1024 * 1024


@pytest.mark.parametrize("entry", ["", "/index.html", "../index.html", "a/../../index.html", "."])
def test_unsafe_entry_names_are_rejected(tmp_path: Path, entry: str) -> None:
    tarball = _dot_tarball(_project(tmp_path / "project"), tmp_path / "project.tar.gz")
    with pytest.raises(ValueError, match="entry"):
        _read(tarball, entry=entry)


def test_the_stream_is_left_open_for_the_caller(tmp_path: Path) -> None:
    tarball = tmp_path / "project.tar.gz"
    build_tarball(_project(tmp_path / "project"), tarball)
    handle: BinaryIO
    with tarball.open("rb") as handle:
        read_composition_from_tarball(handle)
        assert not handle.closed


# --- siteId -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["9a86e90741176ce2", "release-v1.2.3", "a", "A_b-c.d", "x" * 128, "...", ".hidden", "v1..2"],
)
def test_valid_site_ids(value: str) -> None:
    assert validate_site_id(value) == value


@pytest.mark.parametrize(
    "value",
    ["", ".", "..", "x" * 129, "a/b", "sites/x", "a b", " a", "a\n", "é", "a+b", "a%2Fb", "a\\b",
     None, 5, b"abc"],
)  # fmt: skip
def test_invalid_site_ids_name_the_rule(value: object) -> None:
    with pytest.raises(ValueError) as info:
        validate_site_id(value)
    assert SITE_ID_RULE in str(info.value)
    assert repr(value) in str(info.value)


def test_the_rule_reads_well() -> None:
    assert "1-128" in SITE_ID_RULE and "A-Z" in SITE_ID_RULE and "'..'" in SITE_ID_RULE
