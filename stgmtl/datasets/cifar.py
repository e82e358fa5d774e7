"""CIFAR-100 and CIFAR-10 readers: the official python archives and the local ``.npz`` layout.

Where the data is looked for, in order:

1. ``root`` if given, else the folder named by the environment variable ``STGMTL_DATA``,
   else ``data/`` under the current working directory;
2. in that folder, the ``.npz`` layout (``cifar100/{train_part0,train_part1,test}.npz`` +
   ``meta.json``; ``cifar10/{train_subset,test}.npz`` + ``meta.json``) or the extracted
   official archive (``cifar-100-python/``, ``cifar-10-batches-py/``);
3. with ``download=True``, the official archive is fetched from the Toronto site into that
   folder (temp file, MD5 check, atomic rename), then extracted safely (no absolute paths,
   no ``..``, no links or devices).

The official archives are Python pickles. They are read only after the MD5 check (downloads)
or from a folder the user points at; never unpickle files from an untrusted source.

Note on the shared CIFAR-10 ``.npz`` data: it is partial (4,000 train images, the first 400
per class, and 9,966 of the 10,000 test images). :class:`CifarSplit` keeps each image's
official index in ``index``, so subsets such as "official index < 45,000" stay well defined.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from stgmtl._checks import PROGRESS_DELAY_S
from stgmtl._io import atomic_dir, atomic_file

__all__ = [
    "ARCHIVES",
    "CifarSplit",
    "OFFICIAL_SIZES",
    "download_cifar",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "resolve_data_root",
]

DATASETS = ("cifar100", "cifar10")
SPLITS = ("train", "test")
ENV_VAR = "STGMTL_DATA"


@dataclass(frozen=True)
class _Archive:
    url: str
    md5: str
    filename: str
    folder: str


#: Official archive URL, MD5, file name and extracted folder per dataset.
ARCHIVES: dict[str, _Archive] = {
    "cifar100": _Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python.tar.gz",
        "cifar-100-python",
    ),
    "cifar10": _Archive(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
    ),
}

#: Number of images in each official split.
OFFICIAL_SIZES: dict[str, dict[str, int]] = {
    "cifar100": {"train": 50_000, "test": 10_000},
    "cifar10": {"train": 50_000, "test": 10_000},
}


@dataclass(frozen=True)
class CifarSplit:
    """One split of CIFAR-10 or CIFAR-100, held in memory.

    Attributes
    ----------
    name : {"cifar100", "cifar10"}
    split : {"train", "test"}
    images : np.ndarray
        uint8, shape ``(N, 3, 32, 32)`` (CHW, RGB).
    labels : np.ndarray
        int64 ``(N,)`` class ids (CIFAR-100: fine labels 0..99; CIFAR-10: 0..9).
    index : np.ndarray
        int64 ``(N,)`` each image's index in the official split (sorted, may have gaps when
        the source is partial).
    label_names : list of str
        Class names in the official order.
    coarse_labels : np.ndarray or None
        CIFAR-100 only: int64 ``(N,)`` superclass ids 0..19.
    coarse_label_names : list of str or None
        CIFAR-100 only: the 20 superclass names.
    source : str
        Where the data was read from.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    label_names: list[str]
    coarse_labels: np.ndarray | None = None
    coarse_label_names: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def complete(self) -> bool:
        """True when every image of the official split is present."""
        return len(self) == OFFICIAL_SIZES[self.name][self.split]

    @property
    def fine_to_coarse(self) -> np.ndarray | None:
        """CIFAR-100 only: int64 ``(100,)`` superclass id of each fine class."""
        if self.coarse_labels is None:
            return None
        out = np.full(len(self.label_names), -1, dtype=np.int64)
        out[self.labels] = self.coarse_labels
        return out


def _check_choice(arg: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{arg}: expected one of {choices}, got {value!r}")


def _md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _has_npz(folder: Path, name: str) -> bool:
    needed = {
        "cifar100": ("train_part0.npz", "train_part1.npz", "test.npz", "meta.json"),
        "cifar10": ("test.npz", "meta.json"),
    }[name]
    return all((folder / name / f).is_file() for f in needed)


def _has_official(folder: Path, name: str) -> bool:
    arch = ARCHIVES[name]
    marker = "meta" if name == "cifar100" else "batches.meta"
    return (folder / arch.folder / marker).is_file()


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder searched for data: ``root``, else ``$STGMTL_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.cwd() / "data"


def _download(url: str, dest: Path, md5: str, progress: bool) -> None:
    """Stream ``url`` to a temp file beside ``dest``, check the MD5, then rename atomically."""
    h = hashlib.md5()
    with atomic_file(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url) as resp:  # noqa: S310
            total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            bar = tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                desc=f"download {dest.name}",
                disable=not progress,
                delay=PROGRESS_DELAY_S,
            )
            with bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
        if h.hexdigest() != md5:
            raise OSError(
                f"MD5 checksum mismatch for {url}: got {h.hexdigest()}, expected {md5}; "
                "the download is corrupt or not the official archive (nothing was kept)"
            )


def _safe_members(tar: tarfile.TarFile, top: str) -> list[tarfile.TarInfo]:
    """Members of ``tar``, refusing anything that could write outside ``top/``."""
    members = tar.getmembers()
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or not p.parts or p.parts[0] != top:
            raise ValueError(f"unsafe or unexpected path in archive: {m.name!r} (expected {top}/)")
        if not (m.isfile() or m.isdir()):
            raise ValueError(f"archive member {m.name!r} is not a regular file or folder")
    return members


def _extract(archive: Path, root: Path, folder: str) -> Path:
    """Extract ``archive`` into ``root/folder`` through :func:`stgmtl._io.atomic_dir`: the
    members land in a temp folder beside the target, which is swapped in whole (an earlier
    ``root/folder`` stays in place until then, so there is never a moment with nothing there)."""
    target = root / folder
    with atomic_dir(target, what="CIFAR", is_saved=lambda p: p.is_dir()) as out:
        with tarfile.open(archive, "r:gz") as tar:
            members = _safe_members(tar, folder)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(out, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.10.12 without extraction filters
                tar.extractall(out, members=members)  # noqa: S202 - members checked above
        inner = out / folder  # the archive's top folder: lift its contents into ``out``
        for item in list(inner.iterdir()):
            os.replace(item, out / item.name)
        inner.rmdir()
    return target


def download_cifar(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Download (if needed), verify and extract an official CIFAR python archive.

    Parameters
    ----------
    name : {"cifar100", "cifar10"}
        Which dataset.
    root : path, optional
        Folder to cache the archive and its extracted folder in (default: see
        :func:`resolve_data_root`).
    url, md5 : str, optional
        Override the official URL and MD5 (a mirror, or a ``file://`` archive in tests).
    progress : bool, default True
        Show a tqdm progress bar while downloading.

    Returns
    -------
    pathlib.Path
        The extracted folder (``cifar-100-python`` or ``cifar-10-batches-py``).

    Raises
    ------
    OSError
        If the downloaded file's MD5 does not match (the file is deleted).
    ValueError
        If the archive holds a path outside its top folder, a link or a device.
    """
    _check_choice("name", name, DATASETS)
    arch = ARCHIVES[name]
    url = url or arch.url
    md5 = md5 or arch.md5
    root_path = resolve_data_root(root)
    root_path.mkdir(parents=True, exist_ok=True)
    if _has_official(root_path, name):
        return root_path / arch.folder
    archive = root_path / arch.filename
    if not (archive.is_file() and _md5(archive) == md5):
        _download(url, archive, md5, progress)
    return _extract(archive, root_path, arch.folder)


def _unpickle(path: Path) -> dict[bytes, object]:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")  # noqa: S301 - official, MD5-checked format


def _decode(names: object) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]  # type: ignore[attr-defined]


def _chw(data: object) -> np.ndarray:
    arr = np.asarray(data, dtype=np.uint8)
    return np.ascontiguousarray(arr.reshape(-1, 3, 32, 32))


def _read_official(folder: Path, name: str, split: str) -> CifarSplit:
    if name == "cifar100":
        d = _unpickle(folder / split)
        meta = _unpickle(folder / "meta")
        images = _chw(d[b"data"])
        return CifarSplit(
            name=name,
            split=split,
            images=images,
            labels=np.asarray(d[b"fine_labels"], dtype=np.int64),
            index=np.arange(len(images), dtype=np.int64),
            label_names=_decode(meta[b"fine_label_names"]),
            coarse_labels=np.asarray(d[b"coarse_labels"], dtype=np.int64),
            coarse_label_names=_decode(meta[b"coarse_label_names"]),
            source=str(folder),
        )
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [_unpickle(folder / f) for f in files]
    images = np.concatenate([_chw(b[b"data"]) for b in batches])
    labels = np.concatenate([np.asarray(b[b"labels"], dtype=np.int64) for b in batches])
    meta = _unpickle(folder / "batches.meta")
    return CifarSplit(
        name=name,
        split=split,
        images=images,
        labels=labels,
        index=np.arange(len(images), dtype=np.int64),
        label_names=_decode(meta[b"label_names"]),
        source=str(folder),
    )


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _read_npz(folder: Path, name: str, split: str) -> CifarSplit:
    d = folder / name
    meta = json.loads((d / "meta.json").read_text())
    if name == "cifar100":
        files = ["train_part0.npz", "train_part1.npz"] if split == "train" else ["test.npz"]
        parts = [_load_npz(d / f) for f in files]
        images = np.concatenate([p["images"] for p in parts])
        return CifarSplit(
            name=name,
            split=split,
            images=np.ascontiguousarray(images.transpose(0, 3, 1, 2)),
            labels=np.concatenate([p["fine_labels"] for p in parts]).astype(np.int64),
            index=np.concatenate([p["index"] for p in parts]).astype(np.int64),
            label_names=list(meta["fine_label_names"]),
            coarse_labels=np.concatenate([p["coarse_labels"] for p in parts]).astype(np.int64),
            coarse_label_names=list(meta["coarse_label_names"]),
            source=str(d),
        )
    file = d / ("train_subset.npz" if split == "train" else "test.npz")
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing (CIFAR-10 {split} split in the .npz layout)")
    p = _load_npz(file)
    return CifarSplit(
        name=name,
        split=split,
        images=np.ascontiguousarray(p["images"].transpose(0, 3, 1, 2)),
        labels=p["labels"].astype(np.int64),
        index=p["index"].astype(np.int64),
        label_names=list(meta["label_names"]),
        source=str(d),
    )


def load_cifar(
    name: str,
    split: str = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    progress: bool = True,
) -> CifarSplit:
    """Load one split of CIFAR-100 or CIFAR-10 from the ``.npz`` layout or the official archive.

    Parameters
    ----------
    name : {"cifar100", "cifar10"}
        Which dataset.
    split : {"train", "test"}, default "train"
        The official split.
    root : path, optional
        Folder holding ``cifar100/``/``cifar10/`` (``.npz``) or the extracted official
        archive. Default: ``$STGMTL_DATA``, else ``./data``.
    download : bool, default False
        Fetch and verify the official archive into ``root`` when nothing is found.
    progress : bool, default True
        Show download progress.

    Returns
    -------
    CifarSplit

    Raises
    ------
    FileNotFoundError
        When the data is not found and ``download`` is False; the message says how to get it.
    """
    _check_choice("name", name, DATASETS)
    _check_choice("split", split, SPLITS)
    folder = resolve_data_root(root)
    if _has_npz(folder, name):
        return _read_npz(folder, name, split)
    if _has_official(folder, name):
        return _read_official(folder / ARCHIVES[name].folder, name, split)
    if download:
        return _read_official(download_cifar(name, folder, progress=progress), name, split)
    where = (
        "the root argument"
        if root is not None
        else (f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "./data (no $STGMTL_DATA set)")
    )
    raise FileNotFoundError(
        f"{name} data not found in {folder} (from {where}): expected {folder / name}/ in the "
        f".npz layout or {folder / ARCHIVES[name].folder}/ (official archive). Set {ENV_VAR} to "
        f"the folder that holds cifar100/ and cifar10/, or pass download=True to fetch "
        f"{ARCHIVES[name].url} (MD5-checked) into {folder}."
    )


def load_cifar100(split: str = "train", **kwargs: object) -> CifarSplit:
    """Load a CIFAR-100 split; see :func:`load_cifar` for the keyword arguments."""
    return load_cifar("cifar100", split, **kwargs)  # type: ignore[arg-type]


def load_cifar10(split: str = "train", **kwargs: object) -> CifarSplit:
    """Load a CIFAR-10 split; see :func:`load_cifar` for the keyword arguments."""
    return load_cifar("cifar10", split, **kwargs)  # type: ignore[arg-type]
