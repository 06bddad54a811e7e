"""Atomic output directories: a command's ``--out`` appears complete or not at all.

Everything is written into a hidden sibling directory first; only when the command succeeds
is it moved into place (replacing an earlier run's directory). On failure the temporary
directory is removed, so no half-written output is ever left behind. :func:`claim_out` checks
``--out`` before a command's work starts; when two runs write the same ``--out`` at once, the
first to finish wins and the other is told (exit 2), never silently overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import GradleakError


# What each claimed --out was when its run started (None: absent), by resolved path; see claim_out.
_CLAIMS: dict[Path, tuple[int, int] | None] = {}


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def claim_out(out: str | Path, *, inputs: Sequence[str | Path] = (), replaces: bool = True) -> None:
    """Check ``--out`` before any long work: fail now, not after an hour, if it cannot be written.

    Refuses an existing file, a parent that is a file or not writable (probed, so read-only file
    systems count), a directory that would replace the current one, the home directory or one of
    the command's own ``inputs``. Remembers what ``out`` was, so that :func:`atomic_directory` can
    tell when another run wrote it meanwhile. ``replaces=False``: a directory the command adds to
    (a resumable sweep), which may be the current one.
    """
    out = Path(out)
    if str(out).strip() == "":
        raise GradleakError("--out is empty; give a directory for the results")
    try:
        resolved = out.resolve()
        exists, is_dir = out.exists(), out.is_dir()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop; OSError: a name too long
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GradleakError(f"cannot write --out {out}: {reason}") from None
    if exists and not is_dir:
        raise GradleakError(f"--out {out} exists and is not a directory")
    if replaces:
        cwd = Path.cwd().resolve()
        if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
            raise GradleakError(f"--out {out} is the current directory, one above it or the home directory, which "
                                f"the results would replace; give a new directory such as runs/NAME")
        for given in inputs:
            source = Path(given).resolve()
            if source == resolved or resolved in source.parents:
                raise GradleakError(f"--out {out} would replace the input {given}; give another directory")
    ancestor = resolved.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise GradleakError(f"cannot create --out {out}: {ancestor} is not a directory")
    try:  # a probe beside the future directory: permissions, read-only file systems, over-long names
        os.rmdir(tempfile.mkdtemp(prefix=f".{resolved.name}.", suffix=".probe", dir=ancestor))
    except OSError as exc:
        raise GradleakError(f"cannot write --out {out}: {exc.strerror} ({ancestor})") from None
    _CLAIMS[resolved] = _identity(resolved)


def release_claims() -> None:
    """Forget the claims of a finished command (the CLI calls this when a command returns)."""
    _CLAIMS.clear()


class _Replaced(GradleakError):
    """``--out`` changed while this run worked: another run wrote it."""

    def __init__(self, out: Path) -> None:
        super().__init__(f"--out {out} was written by another run meanwhile; this run's results were not kept "
                         f"(use a different --out for runs that overlap)")


@contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    An earlier run's ``out`` is replaced; but if ``out`` changed since this run started (since
    :func:`claim_out`, or entering this block), another run wrote it meanwhile: that one is kept,
    this one's temporary directory is removed and a :class:`GradleakError` says so.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GradleakError(f"--out {out} exists and is not a directory")
    resolved = out.resolve()
    before = _CLAIMS.pop(resolved) if resolved in _CLAIMS else _identity(resolved)
    parent = resolved.parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        _remove_empty(created)
        raise GradleakError(f"cannot create output directory {out}: {exc.strerror}") from None
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the output should be as readable as any new directory
    try:
        yield tmp
        _commit(tmp, resolved, before=before, shown=out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def _commit(tmp: Path, out: Path, *, before: tuple[int, int] | None, shown: Path) -> None:
    """Move ``tmp`` to ``out``, replacing ``before`` (what ``out`` was when the run started) only."""
    if _identity(out) != before:
        raise _Replaced(shown)
    old = None
    if before is not None:
        old = out.parent / f".{out.name}.old-{tmp.name}"
        try:
            out.rename(old)
        except FileNotFoundError:
            raise _Replaced(shown) from None
        if _identity(old) != before:  # another run's directory slipped in between: put it back
            old.rename(out)
            raise _Replaced(shown)
    try:
        os.rename(tmp, out)  # fails when another run's (non-empty) directory is there now
    except OSError:
        raise _Replaced(shown) from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _remove_empty(directories: list[Path]) -> None:
    """Remove the parents this run created (deepest first) if they are still empty."""
    for d in directories:
        try:
            d.rmdir()
        except OSError:
            return


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    """JSON with NaN/Inf written as null (strict JSON readers reject NaN)."""
    path.write_text(json.dumps(_finite(obj), indent=2) + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
