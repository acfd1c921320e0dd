"""Names in the host's inbox: what a request may ask for, and where a second file goes."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from handshake.errors import ValidationError

# Linux NAME_MAX: longer names can't be created on ext4, btrfs, xfs or zfs.
MAX_NAME_BYTES = 255
# Room for the inbox's own path within Linux PATH_MAX (4096), and percent-encoded (× 3)
# still within aiohttp's request-line limit (8190), so the answer is this module's JSON.
MAX_PATH_BYTES = 2048
# Deeper than any honest folder tree; bounds the directories one request may create.
MAX_DEPTH = 32
# Where uploads are written before they are whole (inside the inbox: same file system).
TEMP_DIR = ".edgepair-tmp"
# "report.pdf", "report (2).pdf", … "report (999).pdf": then the name is refused (409).
MAX_NUMBERED = 999


class PathRejected(ValidationError):
    """A requested path that must not be written; ``code`` says why (a 400 or 414)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


def parse(raw: str) -> tuple[str, ...]:
    """Split a raw, percent-encoded relative path into safe names, or raise PathRejected."""
    if not raw:
        raise PathRejected("bad_path", "empty path: expected /api/v1/inbox/<relative path>")
    if raw.startswith("/"):
        raise PathRejected("bad_path", "absolute path: expected a path relative to the inbox")
    if len(raw) > 3 * MAX_PATH_BYTES:
        raise PathRejected("name_too_long", f"path longer than {MAX_PATH_BYTES} bytes", 414)
    parts = tuple(_name(segment) for segment in raw.split("/"))
    if sum(len(p.encode()) + 1 for p in parts) - 1 > MAX_PATH_BYTES:
        raise PathRejected("name_too_long", f"path longer than {MAX_PATH_BYTES} bytes", 414)
    if len(parts) > MAX_DEPTH:
        raise PathRejected("bad_path", f"more than {MAX_DEPTH} folder levels")
    if parts[0] == TEMP_DIR:
        raise PathRejected("bad_path", f"{TEMP_DIR} is reserved for uploads in progress")
    return parts


def numbered(name: str, n: int) -> str:
    """``numbered("report.pdf", 2) == "report (2).pdf"``, kept within MAX_NAME_BYTES."""
    if n < 2:
        return name
    stem, ext = _split(name)
    tag = f" ({n})"
    budget = MAX_NAME_BYTES - len(tag.encode()) - len(ext.encode())
    while len(stem.encode()) > budget:
        stem = stem[:-1]
    return f"{stem}{tag}{ext}"


def _name(segment: str) -> str:
    data = unquote_to_bytes(segment)
    if b"\x00" in data:
        raise PathRejected("bad_path", "NUL byte in a name")
    try:
        name = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PathRejected("bad_encoding", "name is not valid UTF-8") from None
    if not name:
        raise PathRejected("bad_path", "empty name (a doubled or trailing '/')")
    if name in (".", ".."):
        raise PathRejected("bad_path", f"{name!r} is not allowed in a path (path traversal)")
    if "/" in name:
        raise PathRejected("bad_path", "'/' inside a name (encoded as %2F)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise PathRejected("bad_path", "control character in a name")
    if len(data) > MAX_NAME_BYTES:
        raise PathRejected("name_too_long", f"name longer than {MAX_NAME_BYTES} bytes", 414)
    return name


def _split(name: str) -> tuple[str, str]:
    """``"a.tar.gz"`` → ("a", ".tar.gz"); ``".bashrc"`` and ``"README"`` have no extension."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    if stem.lower().endswith(".tar"):
        return stem[:-4], name[len(stem) - 4:]
    return stem, f".{ext}"
