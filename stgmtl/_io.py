"""Atomic, verified files and folders: the one place that writes and checks saved objects.

* :func:`atomic_file` writes a file under a temporary name in the same folder, flushes it to
  disk (``fsync``) and renames it into place, so a crash or a kill leaves either the old file or
  the new one, never a torn one.
* :func:`atomic_dir` does the same for a folder of files (a saved ``DataMaps``, ``TaskGroups``,
  ``TaskAffinity``, ...): the new folder is built beside the old one and swapped in by two
  renames. If a process dies between the two renames, the next save or load puts the previous
  folder back (:func:`recover_dir`).
* :func:`write_manifest` / :func:`read_manifest` / :func:`verified_file`: every saved folder has a
  ``manifest.json`` with its format name and version, the sha256 of each data file and a sha256
  of the manifest's own content (``manifest_sha256``); reading checks the manifest's checksum and
  format, parses defensively and verifies each file's checksum, and every problem is a
  ``ValueError`` that names the file and says what is wrong. So a truncated file, a flipped
  byte anywhere (data file or manifest) or a hand-edited manifest is refused, never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST",
    "atomic_dir",
    "atomic_file",
    "load_checkpoint",
    "read_manifest",
    "read_parquet",
    "recover_dir",
    "save_checkpoint",
    "sha256",
    "verified_file",
    "write_manifest",
]

MANIFEST = "manifest.json"
_SELF_SUM = "manifest_sha256"


def _has_manifest(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_path(path: Path) -> None:
    """Flush a file or folder's metadata to disk (best effort where folders can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. folders on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success flush it and rename it to ``path``.

    The parent folder is created. If the block raises, the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _old_siblings(path: Path) -> list[Path]:
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}.old-"
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))


def recover_dir(
    path: str | os.PathLike[str], *, is_saved: Callable[[Path], bool] = _has_manifest
) -> None:
    """Put back the previous saved folder if a save died between its two renames.

    A save moves the old folder to ``.<name>.old-<id>`` and then the new one to ``<name>``; if
    ``<name>`` is missing and such a sibling is a complete save (``is_saved``: by default, it
    holds a manifest), it is put back. Left-over siblings next to an existing ``<name>`` are
    removed.
    """
    path = Path(path)
    olds = _old_siblings(path)
    if not olds:
        return
    if not path.exists():
        complete = [p for p in olds if is_saved(p)]
        if complete:
            os.replace(complete[-1], path)
            olds = [p for p in olds if p != complete[-1]]
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str],
    *,
    what: str,
    is_saved: Callable[[Path], bool] = _has_manifest,
) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success swap it in as ``path``.

    Parameters
    ----------
    path : path
        The folder to write. An existing folder is replaced only if it is empty or is a saved
        object (``is_saved``); anything else raises ``FileExistsError``.
    what : str
        The kind of object, for the error message (``"DataMaps"``, ``"TaskGroups"``, ...).
    is_saved : callable
        ``is_saved(folder)``: whether a folder is a complete earlier save that may be replaced
        (and, found under a ``.old-`` name after a crash, put back). Default: it holds a
        ``manifest.json``.
    """
    path = Path(path)
    recover_dir(path, is_saved=is_saved)
    if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or is_saved(path))):
        raise FileExistsError(
            f"path: expected a new folder or a saved {what} folder to replace, got {str(path)!r} "
            "(it exists and is not a saved folder); choose another path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.iterdir():
            _fsync_path(f)
        _fsync_path(tmp)
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_path(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_manifest(folder: Path, manifest: Mapping[str, Any], files: Mapping[str, str]) -> None:
    """Write ``folder/manifest.json``: ``manifest`` plus ``files`` and their sha256 checksums.

    Parameters
    ----------
    folder : Path
        The (temporary) folder holding the data files.
    manifest : mapping
        Format name, version and the object's fields (JSON-serialisable).
    files : mapping
        Role -> file name inside ``folder``, e.g. ``{"final": "final.parquet"}``.
    """
    body = dict(manifest)
    body["files"] = dict(files)
    body["sha256"] = {role: sha256(folder / name) for role, name in files.items()}
    body[_SELF_SUM] = _BLANK
    text = json.dumps(body, indent=2)
    (folder / MANIFEST).write_text(text.replace(f'"{_BLANK}"', f'"{_text_sum(text)}"', 1))


_BLANK = "0" * 64


def _text_sum(text: str) -> str:
    """sha256 of a manifest's exact text with its own checksum blanked (every byte counts)."""
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(
    folder: str | os.PathLike[str],
    *,
    what: str,
    formats: Mapping[str, Any],
    unsigned: Collection[tuple[str, int | None]] = (),
) -> dict[str, Any]:
    """Read and check ``folder/manifest.json``.

    Parameters
    ----------
    folder : path
        A folder written by a ``save``.
    what : str
        The kind of object, for messages.
    formats : mapping
        Accepted values of the manifest's ``"format"`` -> accepted versions (a tuple of ints, or
        ``None`` for formats that carry no version).
    unsigned : collection of (format, version)
        Older formats written before manifests carried their own checksum; every other
        manifest must have a matching ``manifest_sha256``.

    Returns
    -------
    dict
        The parsed manifest.

    Raises
    ------
    FileNotFoundError
        If the folder or its manifest does not exist.
    ValueError
        If the manifest is not valid JSON, not an object, fails its own checksum, or is of
        another format or version.
    """
    folder = Path(folder)
    recover_dir(folder)
    mf = folder / MANIFEST
    if not mf.is_file():
        raise FileNotFoundError(
            f"path: expected a saved {what} folder with a {MANIFEST}, got {str(folder)!r}"
        )
    try:
        text = mf.read_text()
        manifest = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"path: {mf} is not valid JSON ({exc}); the {what} folder is damaged, save it again"
        ) from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"path: {mf} holds {type(manifest).__name__}, expected a JSON object")
    own = manifest.get(_SELF_SUM)
    if own is not None and (
        not isinstance(own, str) or own != _text_sum(text.replace(f'"{own}"', f'"{_BLANK}"', 1))
    ):
        raise ValueError(
            f"path: {mf} is corrupt or was edited (its content does not match its "
            f"{_SELF_SUM}); the {what} folder is damaged, save it again"
        )
    fmt = manifest.get("format")
    if not isinstance(fmt, str) or fmt not in formats:
        raise ValueError(f"path: {mf} has format {fmt!r}, expected one of {sorted(formats)}")
    versions = formats[fmt]
    version = manifest.get("format_version")
    if versions is not None and (isinstance(version, bool) or version not in versions):
        raise ValueError(
            f"path: {mf} has format_version {version!r}, expected one of "
            f"{list(versions)} (written by a newer stgmtl?)"
        )
    if own is None and (fmt, None if versions is None else version) not in set(unsigned):
        raise ValueError(
            f"path: {mf} has no {_SELF_SUM} (its format {fmt!r} version {version!r} always "
            "has one): the manifest was edited or damaged, save it again"
        )
    return manifest


def verified_file(
    folder: str | os.PathLike[str],
    manifest: Mapping[str, Any],
    role: str,
    *,
    checksums: bool = True,
) -> Path:
    """The path of data file ``role``, after checking it exists and matches its sha256.

    ``checksums=False`` is only for formats written before checksums existed (no ``sha256``
    entry): their files are only checked to exist. Otherwise a missing checksum is an error,
    so removing the ``sha256`` entry from a manifest does not switch verification off.
    """
    folder = Path(folder)
    files = manifest.get("files")
    if not isinstance(files, Mapping) or not isinstance(files.get(role), str):
        raise ValueError(f"path: {folder / MANIFEST} lists no file for {role!r}")
    f = folder / files[role]
    if f.parent != folder:
        raise ValueError(f"path: {folder / MANIFEST} names a file outside the folder: {f}")
    if not f.is_file():
        raise ValueError(f"path: {folder} is missing {f.name}, which its manifest lists")
    sums = manifest.get("sha256")
    if checksums or sums is not None:
        want = sums.get(role) if isinstance(sums, Mapping) else None
        if not isinstance(want, str):
            raise ValueError(f"path: {folder / MANIFEST} has no sha256 for {files[role]!r}")
        if sha256(f) != want:
            raise ValueError(
                f"path: {f} is corrupt or was changed (its sha256 does not match the manifest)"
            )
    return f


def read_parquet(path: Path) -> Any:
    """``polars.read_parquet``; any reader error becomes a ``ValueError`` naming the file."""
    import polars as pl

    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for bad files
        raise ValueError(f"path: cannot read {path}: {exc}") from exc


_CKPT_MAGIC = b"STGMTL-CHECKPOINT 1\n"


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically, with a sha256 of its bytes in a header.

    The file is ``STGMTL-CHECKPOINT 1\\n``, the hex sha256 of the payload and a newline, then
    the ``torch.save`` payload; :func:`load_checkpoint` verifies the checksum before
    unpickling, so a damaged checkpoint is refused instead of resuming from wrong weights.
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getbuffer()
    digest = hashlib.sha256(payload).hexdigest().encode()
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(_CKPT_MAGIC + digest + b"\n")
        f.write(payload)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], *, map_location: Any = None) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only`` unpickling).

    Raises
    ------
    ValueError
        If the file is not such a checkpoint, is truncated, or fails its checksum; the message
        names the file and says to delete it to start afresh.
    """
    import io

    import torch

    path = Path(path)
    data = path.read_bytes()
    advice = f"delete {path} to start afresh"
    if not data.startswith(_CKPT_MAGIC):
        raise ValueError(f"path: {path} is not an stgmtl checkpoint (no header); {advice}")
    start = len(_CKPT_MAGIC)
    digest, payload = data[start : start + 64], memoryview(data)[start + 65 :]
    if data[start + 64 : start + 65] != b"\n" or hashlib.sha256(payload).hexdigest() != (
        digest.decode("ascii", "replace")
    ):
        raise ValueError(f"path: {path} is damaged or truncated (checksum mismatch); {advice}")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several error types for bad archives
        raise ValueError(f"path: cannot read checkpoint {path}: {exc}; {advice}") from exc
