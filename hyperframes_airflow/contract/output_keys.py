"""Can a render write this `outputKey`? One key at a time, then all the keys of a batch together.

A key names an S3 object in the render bucket and, for the local backend, a file under the
output root, so it must be writable in both: relative, no `..`, `.` or empty segments, no
control or invisible characters, segments within the file systems' 255-byte `NAME_MAX`, a
visible file name, not under a prefix the stack or this provider uses, and ending with the
format's extension. Across the batch no two rows may write one object, and no key may need
another key to be a folder (`v/x.mp4` and `v/x.mp4/y.mp4`). Keys that differ only by letter case
or Unicode normalisation get a warning: they collide on macOS, Windows and SMB roots.

Keys are not personal data (unlike variables), so messages quote them, escaped and shortened.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Final

from hyperframes_airflow.contract.formats import VIDEO_EXTENSIONS, format_extension
from hyperframes_airflow.contract.issues import Issue

__all__ = [
    "DEFAULT_RESERVED_PREFIXES",
    "MAX_PATH_SEGMENT_BYTES",
    "MAX_S3_KEY_BYTES",
    "RESERVED_PREFIX_REASONS",
    "OutputKeyRegistry",
    "output_key_issues",
    "quote_key",
    "reserved_prefix_bases",
]

#: Prefixes no row may write under, by default. Pass `reserved_prefixes` to change them.
DEFAULT_RESERVED_PREFIXES: Final[tuple[str, ...]] = (
    "sites/",
    "renders/",
    ".hyperframes/",
    "manifests/",
)
#: Why each default prefix is reserved (said in the message).
RESERVED_PREFIX_REASONS: Final[dict[str, str]] = {
    "sites": "deployed sites live there",
    "renders": "the stack's scratch space, expired after 7 days by its lifecycle rule",
    ".hyperframes": "the local backend keeps its render records there",
    "manifests": "batch manifests are written there by default",
}

#: S3 rejects longer keys, so catch them before a render runs for minutes and then fails.
MAX_S3_KEY_BYTES: Final = 1024
#: `NAME_MAX` of ext4, XFS, APFS and NTFS: the longest file or folder name, in bytes.
MAX_PATH_SEGMENT_BYTES: Final = 255

_CONTROL_RE: Final = re.compile("[\u0000-\u001f\u007f-\u009f]")
# Characters that show as nothing, or reorder the text around them: two keys that look alike
# would name different objects, and a bidi control can make a key read as another one.
_INVISIBLE_RE: Final = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff]"
)
# Anything that could make an empty, "." or ".." segment; keys without it skip the split.
_SEGMENT_SUSPECT_RE: Final = re.compile(r"//|/\Z|(?:\A|/)\.\.?(?:/|\Z)")
# What `quote_key` escapes besides JSON's own escapes: the characters that would hide or
# reorder text in a terminal or a log viewer.
_UNPRINTABLE_RE: Final = re.compile("[\u007f-\u009f]|" + _INVISIBLE_RE.pattern)
_SHOWN_KEY_CHARS: Final = 120
# The common key, which no path check can object to: "/"-separated segments of printable
# ASCII other than space, '"' and "\\", each 1-255 characters, none starting with "." (so no
# "." or ".." segment and no hidden file name), no leading, trailing or double "/".
_PLAIN_KEY_RE: Final = re.compile(
    r"(?:[!#-\-0-\[\]-~][!#-.0-\[\]-~]{0,254}/)*[!#-\-0-\[\]-~][!#-.0-\[\]-~]{0,254}"
)


def quote_key(key: str, limit: int = _SHOWN_KEY_CHARS) -> str:
    """Quote a key (or a field name) for a message: shortened, with control, invisible and
    bidirectional characters escaped so the message shows what is really there."""
    if len(key) > limit:
        key = key[:limit] + "…"
    quoted = json.dumps(key, ensure_ascii=False)
    return _UNPRINTABLE_RE.sub(lambda m: _escape(m.group()), quoted)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _code_points(chars: Iterable[str]) -> str:
    return ", ".join(f"U+{ord(c):04X}" for c in sorted(set(chars)))


def reserved_prefix_bases(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """Normalise configured prefixes to their folder names (`"/private/"` -> `"private"`)."""
    if isinstance(prefixes, str):
        raise TypeError("reserved_prefixes must be a tuple of prefixes, not a string")
    bases = []
    for prefix in prefixes:
        base = prefix.strip("/")
        if not base:
            raise ValueError(f"reserved prefix {prefix!r} is empty")
        bases.append(base)
    return tuple(bases)


def output_key_issues(
    lineno: int, key: str, reserved_bases: tuple[str, ...], format: str
) -> list[Issue]:
    """Every reason `key` cannot be written, or is wrong for `format`: one error each."""
    plain = len(key) <= MAX_S3_KEY_BYTES and _PLAIN_KEY_RE.fullmatch(key) is not None
    if plain and not key.startswith(reserved_bases):  # the usual key: one regex, no lists
        ext = format_extension(format)
        if ext and key.endswith(ext):
            return []
    problems = [] if plain else _path_problems(key)
    problems += _reserved_prefix_problems(key, reserved_bases)
    quoted = quote_key(key) if problems else ""
    issues = [
        Issue(lineno, "outputKey", "error", f"Unsafe outputKey {quoted} on line {lineno}: {p}")
        for p in problems
    ]
    extension = _extension_problem(key, format)
    if extension:
        message = f"outputKey {quoted or quote_key(key)} on line {lineno} {extension}"
        issues.append(Issue(lineno, "outputKey", "error", message))
    return issues


def _path_problems(key: str) -> list[str]:
    """Why `key` is not a safe relative file path (the checks cheapest first)."""
    problems: list[str] = []
    if key.startswith("/"):
        problems.append('must not start with "/" (keys are relative to the bucket or root)')
    if "\\" in key:
        problems.append('must not contain "\\" (separate folders with "/")')
    if not key.isprintable():
        controls = _CONTROL_RE.findall(key)
        if controls:
            problems.append(f"must not contain control characters (found {_code_points(controls)})")
    if not key.isascii():
        invisible = _INVISIBLE_RE.findall(key)
        if invisible:
            problems.append(
                "must not contain invisible or bidirectional-control characters (found "
                f"{_code_points(invisible)}): they make different keys look the same"
            )
    if _SEGMENT_SUSPECT_RE.search(key):  # most keys skip the split
        problems.extend(_segment_problems(key))
    problems.extend(_name_problems(key))
    # A character is at most 4 UTF-8 bytes: encode only keys that could be too long.
    size = len(key.encode("utf-8")) if len(key) > MAX_S3_KEY_BYTES // 4 else 0
    if size > MAX_S3_KEY_BYTES:
        problems.append(f"is {size} UTF-8 bytes; S3 keys are limited to {MAX_S3_KEY_BYTES}")
    return problems


def _segment_problems(key: str) -> list[str]:
    problems = []
    segments = key.split("/")
    inner = segments[1:] if key.startswith("/") else segments
    if ".." in inner:
        problems.append('must not contain ".." segments (they could escape the output root)')
    if "." in inner:
        problems.append('must not contain "." segments (two spellings of one object)')
    if "" in inner[:-1]:
        problems.append('must not contain empty segments ("//")')
    if len(inner) > 1 and inner[-1] == "":
        problems.append('must not end with "/" (that names a folder, not a file)')
    return problems


def _name_problems(key: str) -> list[str]:
    """File-system limits on the folder and file names a key is made of."""
    problems = []
    basename = key.rpartition("/")[2]
    if basename.startswith(".") and basename not in (".", ".."):
        problems.append(
            f'its file name {quote_key(basename)} starts with ".": a hidden file, or only an '
            "extension with no name"
        )
    if len(key) > MAX_PATH_SEGMENT_BYTES // 4:  # shorter keys cannot hold a long segment
        for segment in key.split("/"):
            size = len(segment.encode("utf-8")) if len(segment) > MAX_PATH_SEGMENT_BYTES // 4 else 0
            if size > MAX_PATH_SEGMENT_BYTES:
                problems.append(
                    f"has a path segment of {size} UTF-8 bytes ({quote_key(segment, 40)}); "
                    f"file systems limit a file or folder name to {MAX_PATH_SEGMENT_BYTES} bytes"
                )
    return problems


def _reserved_prefix_problems(key: str, reserved_bases: tuple[str, ...]) -> list[str]:
    problems = []
    for base in reserved_bases:
        if key.startswith(base) and (len(key) == len(base) or key[len(base)] == "/"):
            reason = RESERVED_PREFIX_REASONS.get(base, "reserved by configuration")
            problems.append(f'must not be under the reserved prefix "{base}/" ({reason})')
    return problems


def _extension_problem(key: str, format: str) -> str | None:
    ext = format_extension(format)
    if ext and not (key.endswith(ext) or key[-len(ext) :].lower() == ext):
        return f'must end with "{ext}" for format {format}'
    if not ext and key[-5:].lower().endswith(VIDEO_EXTENSIONS):
        return (
            f"must not end with a video extension ({', '.join(VIDEO_EXTENSIONS)}) for format "
            'png-sequence: the output is a gzip tar of PNG frames (".tar.gz" is a good ending)'
        )
    return None


def _fold(key: str) -> str:
    """The spelling a case-insensitive, normalising file system sees (canonical caseless form)."""
    if key.isascii():
        return key if key.islower() else key.lower()
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", key).casefold())


class OutputKeyRegistry:
    """The keys of one batch, for the checks that compare rows.

    Memory is one dict entry per key (plus one per key whose folded spelling differs). The first
    line to use a key keeps it, even when that line is rejected for another reason, so fixing one
    line never turns another into a duplicate.
    """

    def __init__(self) -> None:
        self.first_line: dict[str, int] = {}
        self.unwritable: set[str] = set()  # claimed keys with problems of their own
        self.folded_first_line: dict[str, int] = {}  # only for keys whose fold differs

    def claim(self, lineno: int, key: str, *, writable: bool) -> list[Issue]:
        """Record `key` for `lineno`: an error if an earlier line has it, a warning if an earlier
        line has a key that differs only by case or normalisation."""
        first = self.first_line.setdefault(key, lineno)
        if first != lineno:
            return [
                Issue(
                    lineno,
                    "outputKey",
                    "error",
                    f"Duplicate outputKey {quote_key(key)} on line {lineno} (first used on line "
                    f"{first}): two renders would write one object.",
                )
            ]
        if not writable:
            self.unwritable.add(key)
            return []
        return self._look_alikes(lineno, key)

    def _look_alikes(self, lineno: int, key: str) -> list[Issue]:
        folded = _fold(key)
        earlier = self.folded_first_line.get(folded) if self.folded_first_line else None
        if folded != key:
            self.folded_first_line.setdefault(folded, lineno)
            if earlier is None and folded not in self.unwritable:
                earlier = self.first_line.get(folded)
        if earlier is None or earlier == lineno:
            return []
        return [
            Issue(
                lineno,
                "outputKey",
                "warning",
                f"outputKey {quote_key(key)} on line {lineno} differs from the key of line "
                f"{earlier} only by letter case or Unicode normalisation: on case-insensitive or "
                "normalising file systems (macOS, Windows, SMB shares) both name one file.",
            )
        ]

    def folder_conflicts(self) -> list[Issue]:
        """Keys that need another key to be a folder, reported on the later of the two lines.

        Run once all keys are known (so either order is found) and linear in the keys: each
        writable key looks up the folders on its own path.
        """
        issues = []
        for key, line in self.first_line.items():
            if key in self.unwritable:
                continue
            cut = key.find("/")
            while cut != -1:
                folder = key[:cut]
                other = self.first_line.get(folder)
                if other is not None and folder not in self.unwritable:
                    issues.append(_folder_conflict(folder, other, key, line))
                cut = key.find("/", cut + 1)
        return issues


def _folder_conflict(file_key: str, file_line: int, nested_key: str, nested_line: int) -> Issue:
    if nested_line > file_line:
        line = nested_line
        message = (
            f"outputKey {quote_key(nested_key)} on line {nested_line} needs "
            f"{quote_key(file_key)} to be a folder, but line {file_line} writes a file there: a "
            "file and a folder cannot share a path."
        )
    else:
        line = file_line
        message = (
            f"outputKey {quote_key(file_key)} on line {file_line} is a folder of line "
            f"{nested_line}'s {quote_key(nested_key)}: a file and a folder cannot share a path."
        )
    return Issue(line, "outputKey", "error", message)
