"""Writes under the state folder that a crash or a disk fault cannot leave half done.

- **Stage, then swap.** A file or folder is written under a temporary name beside its
  target (`.<name>.tmp-<pid>`), flushed to disk (fsync), and renamed over the target in one
  step. A folder that already exists is first renamed aside (`.<name>.old-<pid>`), then the
  new one is renamed in and the old one deleted. Several files that belong together
  (`write_files`) are all staged before the first one is renamed, so a write that fails
  changes none of them.
- **Clear errors.** A write that fails because the disk is full, the file system is
  read-only or a size limit is hit raises `StateWriteError`, which names the path and the
  cause (ENOSPC, EROFS, EFBIG, ...) instead of a library's raw message; the staged files
  are removed and the previous version stays as it was.
- **Leftovers.** A writer killed outright (SIGKILL, power loss) leaves its temporary names
  behind. The next write of the same target removes those of processes that are gone, and
  puts an old folder back if the kill came between the two renames of a swap.
- **Crash points.** `crash_point(name)` kills the process with SIGKILL when the environment
  variable `FT_PIPELINE_CRASH_AT` equals `name`: the crash drills in the tests stop the real
  code at named points. Unset (always, outside those drills), it does nothing.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

CRASH_ENV = "FT_PIPELINE_CRASH_AT"
CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (the file size limit was reached)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
HINTS = {
    errno.ENOSPC: "Free space on the state folder's file system",
    errno.EDQUOT: "Free space (or raise the quota) on the state folder's file system",
    errno.EFBIG: "Raise the file size limit (ulimit -f)",
    errno.EROFS: "Remount the state folder's file system read-write",
    errno.EACCES: "Make the state folder writable for this user",
    errno.EPERM: "Make the state folder writable for this user",
}
# Libraries that write through their own I/O layer (Arrow, safetensors in Rust) do not always
# raise an OSError with an errno; their messages still carry the system's wording.
_WORDING = (
    ("no space left on device", errno.ENOSPC),
    ("storagefull", errno.ENOSPC),
    ("os error 28", errno.ENOSPC),
    ("disk quota exceeded", errno.EDQUOT),
    ("read-only file system", errno.EROFS),
    ("readonlyfilesystem", errno.EROFS),
    ("os error 30", errno.EROFS),
    ("file too large", errno.EFBIG),
    ("filetoolarge", errno.EFBIG),
    ("os error 27", errno.EFBIG),
    ("permission denied", errno.EACCES),
)
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")


class StateWriteError(OSError):
    """A write under the state folder failed for a reason outside the code (disk full,
    read-only file system, size limit); what was there before is unchanged."""

    def __init__(self, path: Path | str, code: int, detail: str = "") -> None:
        super().__init__(code, CAUSES.get(code, os.strerror(code)), str(path))
        name = errno.errorcode.get(code, str(code))
        where = f" (while writing {detail})" if detail and detail != str(path) else ""
        self.message = (
            f"cannot write {path}: {self.strerror} ({name}){where}; the previous version is "
            f"unchanged. {HINTS.get(code, 'Fix the state folder')} and materialize again."
        )

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (_rebuild, (self.filename, self.errno, self.message))


def _rebuild(path: str, code: int, message: str) -> StateWriteError:
    error = StateWriteError(path, code)
    error.message = message
    return error


def crash_point(name: str) -> None:
    """SIGKILL this process when `FT_PIPELINE_CRASH_AT` names this point (crash drills)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def fault_errno(exc: BaseException) -> int | None:
    """The errno of a disk fault behind `exc` (or its causes), or None for other errors."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in CAUSES:
            return current.errno
        text = str(current).lower().replace(" ", "") + " " + str(current).lower()
        for words, code in _WORDING:
            if words in text:
                return code
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn a disk fault raised inside the block into a StateWriteError naming `path`."""
    try:
        yield
    except StateWriteError:
        raise
    except Exception as exc:
        code = fault_errno(exc)
        if code is None:
            raise
        detail = getattr(exc, "filename", None) or ""
        raise StateWriteError(path, code, str(detail)) from exc


def temp_name(target: Path, kind: str = "tmp") -> Path:
    """This process's temporary name beside `target` (`.<name>.<kind>-<pid>`)."""
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers are from an earlier, failed attempt in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _discard(path: Path) -> None:
    """Remove a staged file, quietly: on a read-only file system it was never created."""
    with suppress(OSError):
        path.unlink(missing_ok=True)


def clean_leftovers(target: Path) -> list[Path]:
    """Remove temporary copies of `target` left by writers that died; return them.

    An old folder renamed aside by a swap that was killed before the new one was renamed in
    is put back when `target` is missing: the target is then the old version again."""
    parent = target.parent
    if not parent.is_dir():
        return []
    removed = []
    for entry in sorted(parent.iterdir(), key=lambda p: p.name):
        found = _LEFTOVER.match(entry.name)
        if not found or found["name"] != target.name or _alive(int(found["pid"])):
            continue
        if found["kind"] == "old" and not os.path.lexists(target):
            os.replace(entry, target)
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` (and `root` itself)."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


def swap_dir(staged: Path, target: Path, label: str = "") -> None:
    """Rename a complete staged folder over `target`, keeping the old one until it is in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = temp_name(target, "old")
    had_old = target.exists()
    if had_old:
        os.replace(target, old)
        if label:
            crash_point(f"{label}.swapping")
    try:
        os.replace(staged, target)
    except BaseException:
        if had_old and not target.exists():
            os.replace(old, target)
        raise
    fsync_path(target.parent)
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(target: Path, label: str = "") -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; swap it in when the block succeeds.

    A failing block (or a failing flush/rename) removes the temporary folder and leaves
    `target` as it was; a disk fault is raised as StateWriteError. Crash points
    `<label>.staged` (complete, not yet swapped) and `<label>.swapping` (old one renamed
    aside, new one not yet renamed in) are available for crash drills."""
    staged = temp_name(target)
    try:
        with writing(target):
            clean_leftovers(target)
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir(parents=True)
            yield staged
            fsync_tree(staged)
            if label:
                crash_point(f"{label}.staged")
            swap_dir(staged, target, label)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def write_files(items: Sequence[tuple[Path, Callable[[Path], None]]]) -> None:
    """Write several files together: each `writer(tmp_path)` is staged and flushed first,
    then they are renamed into place in the given order. A failure changes none of them."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, writer in items:
            with writing(target):
                clean_leftovers(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = temp_name(target)
                staged.append((tmp, target))
                writer(tmp)
                fsync_path(tmp)
        for tmp, target in staged:
            with writing(target):
                os.replace(tmp, target)
        for parent in {target.parent for _, target in staged}:
            fsync_path(parent)
    except BaseException:
        for tmp, _ in staged:
            _discard(tmp)
        raise


def write_file(target: Path, writer: Callable[[Path], None]) -> None:
    """Write one file through a temporary name (see `write_files`)."""
    write_files([(target, writer)])


def write_text(target: Path, text: str) -> None:
    write_file(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_parquet(frame, target: Path) -> None:
    """A DataFrame as Parquet, atomically."""
    write_file(target, lambda tmp: frame.to_parquet(tmp, index=False))
