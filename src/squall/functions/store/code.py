"""Content-addressed store of function code packages.

A deployment package (a zip) is kept twice under ``root``:

* ``root/zips/<hex>.zip`` -- the bytes as uploaded, served back for GetFunction's ``Code.Location``;
* ``root/code/<hex>/`` -- the extracted tree, read-only (files 0444, or 0555 when the zip marks them executable;
  directories 0555; owned by root when we run as root), which sandboxes mount or read.

``<hex>`` is the SHA-256 of the zip bytes, so the same zip always maps to the same directory and is extracted once.

Everything is validated before a byte is written: the archive must parse, stay under Lambda's size limits
(50 MB zipped for a direct upload, 250 MB unzipped), hold at most :data:`MAX_ENTRIES` entries, have no absolute,
``..``, backslash or drive-letter names, no duplicates, no encrypted entries, and only symlinks that stay inside the
package.  Extraction then streams every entry with a running byte budget and a compression-ratio limit (the sizes a
zip declares are never trusted), into a temporary directory beside the target that is renamed into place only when
complete: a crash never leaves a half-extracted directory at the final path.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import re
import shutil
import stat
import threading
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from squall.core.errors import InvalidParameterValue, RequestTooLarge, ResourceNotFound, ServiceError
from squall.store.disk import DiskFull, DiskGuard, is_disk_full

__all__ = [
    "MAX_ENTRIES",
    "MAX_RATIO",
    "MAX_UNZIPPED_BYTES",
    "MAX_ZIP_BYTES",
    "UNZIP_FAILED",
    "CodeArtifact",
    "CodeStore",
    "code_sha256",
]

#: Lambda's limit on a zip uploaded directly in the request (50 MB)
MAX_ZIP_BYTES = 50 * 1024 * 1024
#: Lambda's limit on the unzipped size of a function's code and layers (250 MB)
MAX_UNZIPPED_BYTES = 262_144_000
#: most entries a package may hold
MAX_ENTRIES = 20_000
#: most bytes the whole package may expand to per byte of zip, once it expands past :data:`RATIO_FLOOR`
#: (deflate tops out near 1030:1, so only pathological archives -- long runs of zeros, bzip2/lzma bombs -- hit it)
MAX_RATIO = 1000
#: a package may always expand to this many bytes, whatever its ratio (small zips of text compress well)
RATIO_FLOOR = 16 * 1024 * 1024
#: Lambda's own message for an archive it cannot read
UNZIP_FAILED = "Could not unzip uploaded file. Please check your file, then try to upload again."

_HEX = re.compile(r"[0-9a-f]{64}")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 64 * 1024
_MAX_NAME_BYTES = 255  # one path component (NAME_MAX)
_MAX_PATH_BYTES = 1024
_MAX_LINK_BYTES = 1024
_SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"


def code_sha256(data: bytes) -> str:
    """Lambda's ``CodeSha256`` of a package: the base64 of the SHA-256 digest of the zip bytes."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


@dataclass(frozen=True)
class CodeArtifact:
    """One stored package."""

    #: Lambda's ``CodeSha256``: base64 of the SHA-256 digest of the zip
    sha256: str
    #: hex SHA-256 digest of the zip; the key of the package in the store
    hex_digest: str
    #: bytes of the zip (Lambda's ``CodeSize``)
    size: int
    #: bytes of all entries once extracted
    unpacked_size: int
    #: the extracted, read-only directory
    path: Path


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    #: normalised relative path ("a/b/c.py"), never empty, never with "." or ".." components
    rel: str
    kind: str  # "file" | "dir" | "link"
    executable: bool


def _refuse(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(message)


def _unix_mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF


def _normalise_name(raw: str) -> tuple[str, bool]:
    """Check one entry name; return (relative path, ends with "/").  Raises InvalidParameterValue."""
    shown = repr(raw)
    if not raw:
        raise _refuse("The zip file has an entry with an empty name; re-create the zip with a standard zip tool.")
    if "\x00" in raw:
        raise _refuse(f"Zip entry {shown} has a NUL byte in its name; re-create the zip with a standard zip tool.")
    if "\\" in raw:
        raise _refuse(
            f"Zip entry {shown} uses a backslash in its path; zip paths must use forward slashes "
            "(re-create the zip with a tool that writes '/' separators, e.g. `zip -r` or Python's zipfile)."
        )
    if raw.startswith("/"):
        raise _refuse(f"Zip entry {shown} has an absolute path; entries must be relative to the package root.")
    if _DRIVE.match(raw):
        raise _refuse(f"Zip entry {shown} starts with a drive letter; entries must be relative to the package root.")
    if len(raw.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        raise _refuse(f"Zip entry {raw[:80]!r}... has a path longer than {_MAX_PATH_BYTES} bytes; shorten it.")
    is_dir = raw.endswith("/")
    parts: list[str] = []
    for part in raw.rstrip("/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise _refuse(
                f"Zip entry {shown} has a '..' path component that would escape the package root; "
                "entries must stay inside the package."
            )
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES:
            raise _refuse(f"Zip entry {shown} has a path component longer than {_MAX_NAME_BYTES} bytes; shorten it.")
        parts.append(part)
    if not parts:
        if is_dir:
            return "", True  # "./" -- the root itself; ignored
        raise _refuse(f"Zip entry {shown} does not name a file; re-create the zip with a standard zip tool.")
    return "/".join(parts), is_dir


def _check_link_target(entry: str, target: str) -> None:
    """A symlink may point only inside the package: relative, leading ``..`` only, never above the root."""
    shown = f"Zip entry {entry!r} is a symlink to {target!r}"
    if not target or "\x00" in target or "\\" in target:
        raise _refuse(
            f"{shown}, which is not a valid link target; symlinks must point to a relative path inside the package."
        )
    if target.startswith("/") or _DRIVE.match(target):
        raise _refuse(f"{shown}, an absolute path; symlinks must point to a relative path inside the package.")
    depth = entry.count("/")  # directories between the root and the link
    ups = 0
    seen_name = False
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if seen_name:
                # ".." after a name could climb out of a directory reached through another symlink
                raise _refuse(f"{shown}; '..' may only appear at the start of a symlink target inside the package.")
            ups += 1
            if ups > depth:
                raise _refuse(f"{shown}, which points outside the package; symlinks must stay inside the package.")
        else:
            seen_name = True


def _scan(zf: zipfile.ZipFile) -> list[_Entry]:
    """Validate the central directory: names, kinds, flags, counts and declared sizes.  Writes nothing."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _refuse(
            f"The zip file has {len(infos)} entries; a package may hold at most {MAX_ENTRIES}. "
            "Remove unneeded files (tests, docs, caches) from the package."
        )
    entries: list[_Entry] = []
    seen: dict[str, str] = {}  # rel -> kind, for files, links and explicit dirs
    declared = 0
    for info in infos:
        rel, slash = _normalise_name(info.orig_filename)
        if info.flag_bits & 0x1:
            raise _refuse(
                f"Zip entry {info.orig_filename!r} is encrypted; upload a zip without a password or encryption."
            )
        if info.compress_type not in _SUPPORTED_METHODS:
            raise _refuse(
                f"Zip entry {info.orig_filename!r} uses unsupported compression method {info.compress_type}; "
                "use deflate (the default of every zip tool) or store."
            )
        mode = _unix_mode(info)
        fmt = stat.S_IFMT(mode)
        if slash or fmt == stat.S_IFDIR:
            kind = "dir"
        elif fmt == stat.S_IFLNK:
            kind = "link"
        elif fmt in (0, stat.S_IFREG):
            kind = "file"
        else:
            raise _refuse(
                f"Zip entry {info.orig_filename!r} is a special file (device, pipe or socket); "
                "a package may hold only regular files, directories and symlinks."
            )
        if not rel:
            continue
        if kind == "link" and info.file_size > _MAX_LINK_BYTES:
            raise _refuse(f"Zip entry {info.orig_filename!r} is a symlink with an overlong target.")
        previous = seen.get(rel)
        if previous is not None and not (previous == "dir" and kind == "dir"):
            raise _refuse(
                f"The zip file has more than one entry named {rel!r}; re-create the zip so each path appears once."
            )
        seen[rel] = kind
        if kind != "dir":
            declared += info.file_size
            if declared > MAX_UNZIPPED_BYTES:
                raise _too_big_unzipped()
        entries.append(_Entry(info, rel, kind, bool(mode & 0o111) and kind == "file"))
    # a path may not be both a file (or symlink) and a directory holding other entries
    for rel in seen:
        parent = rel.rpartition("/")[0]
        while parent:
            parent_kind = seen.get(parent)
            if parent_kind is not None and parent_kind != "dir":
                raise _refuse(
                    f"Zip entry {rel!r} lies under {parent!r}, which the zip also has as a "
                    f"{'symlink' if parent_kind == 'link' else 'file'}; re-create the zip from a real directory tree."
                )
            parent = parent.rpartition("/")[0]
    if not any(e.kind != "dir" for e in entries):
        raise _refuse("The zip file is empty; it must contain at least your handler's source file.")
    return entries


def _too_big_unzipped() -> InvalidParameterValue:
    return _refuse(
        f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes. "
        "Remove unneeded files or dependencies from the package."
    )


class _Budget:
    """Bytes left to write, with the compression-ratio limit of the whole archive."""

    def __init__(self, zip_size: int, max_ratio: int) -> None:
        self.written = 0
        self.limit = MAX_UNZIPPED_BYTES
        self.ratio_limit = max(RATIO_FLOOR, max_ratio * zip_size)
        self.max_ratio = max_ratio

    def take(self, n: int) -> None:
        self.written += n
        if self.written > self.limit:
            raise _too_big_unzipped()
        if self.written > self.ratio_limit:
            raise _too_compressible(self.max_ratio)


def _too_compressible(max_ratio: int) -> InvalidParameterValue:
    return _refuse(
        f"The zip file expands to more than {max_ratio} times its own size (a zip bomb?); packages this "
        "compressible are refused. Remove the highly repetitive files (e.g. large runs of zeros) from the package."
    )


def _make_writable(path: Path) -> None:
    """Undo the read-only modes so a tree can be removed even when we are not root."""
    if not path.exists() or path.is_symlink():
        return
    try:
        os.chmod(path, 0o700)
    except OSError:
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o700)
                except OSError:
                    pass


def _remove_tree(path: Path) -> None:
    _make_writable(path)
    shutil.rmtree(path, ignore_errors=True)


class CodeStore:
    """Function code packages, content-addressed by the SHA-256 of the zip.  Thread-safe."""

    def __init__(self, root: Path, *, max_ratio: int = MAX_RATIO, durable: bool = True) -> None:
        """``durable``: flush the extracted files to disk (one ``sync``) before renaming them into place, so a
        power failure cannot leave a directory with empty files behind."""
        self.root = Path(root)
        self.max_ratio = max_ratio
        self.durable = durable
        self._code = self.root / "code"
        self._zips = self.root / "zips"
        #: the data directory's free-space guard (set by the server; None: no checks)
        self.disk: DiskGuard | None = None
        self._lock = threading.Lock()
        for d in (self.root, self._code, self._zips):
            d.mkdir(parents=True, exist_ok=True)
        self._sweep_temporaries()

    def _full(self, exc: OSError) -> DiskFull:
        if self.disk is not None:
            return self.disk.failed(exc) or DiskFull(self.root)
        return DiskFull(self.root)

    # -- public API --

    def put_zip(self, data: bytes) -> CodeArtifact:
        """Validate, store and extract a package.  Idempotent: the same zip returns the same artifact and is
        extracted only once.  Raises RequestTooLarge (zip over 50 MB) or InvalidParameterValue (anything else
        wrong with the archive; nothing is written then)."""
        if len(data) > MAX_ZIP_BYTES:
            raise RequestTooLarge(
                f"Zipped size must be smaller than {MAX_ZIP_BYTES} bytes for a direct upload; got {len(data)} bytes. "
                "Remove unneeded files or dependencies from the package."
            )
        hex_digest = hashlib.sha256(data).hexdigest()
        if self.disk is not None and not (self._zips / f"{hex_digest}.zip").is_file():
            self.disk.check_write(2 * len(data))  # the zip and (at least) as much again extracted
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except Exception:
            raise _refuse(UNZIP_FAILED)
        with zf, self._lock:
            entries = _scan(zf)
            unpacked = sum(e.info.file_size for e in entries if e.kind != "dir")
            if not (self._code / hex_digest).is_dir():
                if unpacked > max(RATIO_FLOOR, self.max_ratio * len(data)):
                    raise _too_compressible(self.max_ratio)
                unpacked = self._extract(zf, entries, hex_digest, len(data))
            # the zip is written after the tree: a crash in between leaves an unreferenced tree that the next
            # put_zip of the same package completes (or delete_unreferenced removes)
            self._ensure_zip(hex_digest, data)
            return self._artifact(data, hex_digest, unpacked)

    def get(self, hex_digest: str) -> Path | None:
        """The extracted directory of a package, or None if the store does not hold it."""
        if not _HEX.fullmatch(hex_digest):
            return None
        path = self._code / hex_digest
        return path if path.is_dir() else None

    def get_zip(self, hex_digest: str) -> bytes:
        """The zip bytes of a package, as uploaded.  Raises ResourceNotFound if the store does not hold it."""
        if _HEX.fullmatch(hex_digest):
            try:
                return (self._zips / f"{hex_digest}.zip").read_bytes()
            except FileNotFoundError:
                pass
        raise ResourceNotFound(f"No code package with SHA-256 {hex_digest!r} is stored.")

    def digests(self) -> set[str]:
        """Hex digests of every package the store holds."""
        return {p.name for p in self._code.iterdir() if _HEX.fullmatch(p.name)} | {
            p.stem for p in self._zips.iterdir() if p.suffix == ".zip" and _HEX.fullmatch(p.stem)
        }

    def delete_unreferenced(self, keep: Iterable[str]) -> set[str]:
        """Garbage collection: delete every package whose hex digest is not in ``keep``.  Returns the deleted
        digests.  Each directory is first renamed aside, so ``get`` never returns a half-deleted tree."""
        keep = set(keep)
        deleted: set[str] = set()
        with self._lock:
            for hex_digest in self.digests() - keep:
                path = self._code / hex_digest
                if path.is_dir():
                    trash = self._code / f"{_TRASH_PREFIX}{hex_digest}-{uuid.uuid4().hex}"
                    os.rename(path, trash)
                    _remove_tree(trash)
                try:
                    (self._zips / f"{hex_digest}.zip").unlink()
                except FileNotFoundError:
                    pass
                deleted.add(hex_digest)
            self._sweep_temporaries()
        return deleted

    # -- internals --

    def _artifact(self, data: bytes, hex_digest: str, unpacked: int) -> CodeArtifact:
        return CodeArtifact(
            sha256=code_sha256(data),
            hex_digest=hex_digest,
            size=len(data),
            unpacked_size=unpacked,
            path=self._code / hex_digest,
        )

    def _sweep_temporaries(self) -> None:
        """Remove what a crash left behind: partial extractions, trash, partial zips."""
        for d in (self._code, self._zips):
            for p in d.iterdir():
                if p.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
                    if p.is_dir() and not p.is_symlink():
                        _remove_tree(p)
                    else:
                        p.unlink(missing_ok=True)

    def _ensure_zip(self, hex_digest: str, data: bytes) -> None:
        path = self._zips / f"{hex_digest}.zip"
        if path.is_file():
            return
        tmp = self._zips / f"{_TMP_PREFIX}{hex_digest}-{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
            os.rename(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise self._full(exc) from exc
            raise ServiceError(f"Could not store the code package: {exc}")

    def _extract(self, zf: zipfile.ZipFile, entries: list[_Entry], hex_digest: str, zip_size: int) -> int:
        final = self._code / hex_digest
        tmp = self._code / f"{_TMP_PREFIX}{hex_digest}-{uuid.uuid4().hex}"
        os.mkdir(tmp, 0o700)
        budget = _Budget(zip_size, self.max_ratio)
        try:
            links: list[tuple[_Entry, str]] = []
            for entry in entries:
                target = tmp / entry.rel
                if entry.kind == "dir":
                    target.mkdir(parents=True, exist_ok=True, mode=0o700)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if entry.kind == "link":
                    raw = self._read_small(zf, entry, budget)
                    try:
                        link_target = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise _refuse(f"Zip entry {entry.rel!r} is a symlink whose target is not valid UTF-8.")
                    _check_link_target(entry.rel, link_target)
                    links.append((entry, link_target))
                    continue
                self._write_file(zf, entry, target, budget)
            # symlinks last: nothing is ever written through one
            for entry, link_target in links:
                os.symlink(link_target, tmp / entry.rel)
            self._seal(tmp, {e.rel for e in entries if e.executable})
            if self.durable:
                os.sync()
            try:
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.is_dir():
                    _remove_tree(tmp)  # another process extracted the same package first
                else:
                    raise
            return budget.written
        except InvalidParameterValue:
            _remove_tree(tmp)
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, RuntimeError):
            _remove_tree(tmp)
            raise _refuse(UNZIP_FAILED)
        except OSError as exc:
            _remove_tree(tmp)
            if exc.errno == errno.ENAMETOOLONG:
                raise _refuse(f"A zip entry's path is too long for the file system ({exc}); shorten it.")
            if is_disk_full(exc):
                raise self._full(exc) from exc
            raise ServiceError(f"Could not extract the code package: {exc}")
        except BaseException:
            _remove_tree(tmp)
            raise

    def _read_small(self, zf: zipfile.ZipFile, entry: _Entry, budget: _Budget) -> bytes:
        with zf.open(entry.info) as src:
            data = src.read(_MAX_LINK_BYTES + 1)
        if len(data) > _MAX_LINK_BYTES:
            raise _refuse(f"Zip entry {entry.rel!r} is a symlink with an overlong target.")
        budget.take(len(data))
        return data

    def _write_file(self, zf: zipfile.ZipFile, entry: _Entry, target: Path, budget: _Budget) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, 0o600)
        written = 0
        with os.fdopen(fd, "wb") as dst, zf.open(entry.info) as src:
            while True:
                chunk = src.read(_CHUNK)  # decompresses at most _CHUNK bytes: memory stays bounded
                if not chunk:
                    break
                written += len(chunk)
                budget.take(len(chunk))
                dst.write(chunk)
        if written != entry.info.file_size:
            raise _refuse(UNZIP_FAILED)

    @staticmethod
    def _seal(tmp: Path, executables: set[str]) -> None:
        """Make the tree read-only: files 0444 (0555 if the zip marks them executable), directories 0555, all owned
        by root when we are root."""
        as_root = os.geteuid() == 0
        for dirpath, dirnames, filenames in os.walk(tmp, topdown=False):
            base = Path(dirpath)
            for name in [*filenames, *dirnames]:
                p = base / name
                if as_root:
                    os.lchown(p, 0, 0)
                if p.is_symlink():
                    continue
                if p.is_dir():
                    os.chmod(p, 0o555)
                else:
                    os.chmod(p, 0o555 if p.relative_to(tmp).as_posix() in executables else 0o444)
        if as_root:
            os.chown(tmp, 0, 0)
        os.chmod(tmp, 0o555)
