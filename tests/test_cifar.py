"""CIFAR readers: official-format archive (written here), download path, checksum, npz layout."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from stgmtl.datasets import cifar
from stgmtl.datasets.cifar import download_cifar, load_cifar, load_cifar10, load_cifar100


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _fake_cifar100(path: Path, n_train: int = 12, n_test: int = 5) -> dict:
    """A small CIFAR-100 archive in the official python format; returns what it holds."""
    rng = np.random.default_rng(0)
    fine_names = [f"fine{i}".encode() for i in range(100)]
    coarse_names = [f"coarse{i}".encode() for i in range(20)]
    out = {}
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", n_train), ("test", n_test)):
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            fine = rng.integers(0, 100, size=n).tolist()
            d = {
                b"data": data,
                b"fine_labels": fine,
                b"coarse_labels": [f // 5 for f in fine],
                b"filenames": [f"img{i}.png".encode() for i in range(n)],
            }
            out[split] = d
            _add(tar, f"cifar-100-python/{split}", pickle.dumps(d))
        meta = {b"fine_label_names": fine_names, b"coarse_label_names": coarse_names}
        _add(tar, "cifar-100-python/meta", pickle.dumps(meta))
    return out


def _fake_cifar10(path: Path, n: int = 4) -> dict:
    rng = np.random.default_rng(1)
    out = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [1, 3, 5, 9]}
            out[name] = d
            _add(tar, f"cifar-10-batches-py/{name}", pickle.dumps(d))
        meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta))
    return out


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_and_read_official_cifar100(tmp_path: Path) -> None:
    src = tmp_path / "src.tar.gz"
    fake = _fake_cifar100(src)
    root = tmp_path / "root"
    folder = download_cifar(
        "cifar100", root, url=src.resolve().as_uri(), md5=_md5(src), progress=False
    )
    assert folder == root / "cifar-100-python"
    assert (root / "cifar-100-python.tar.gz").is_file()  # cached archive
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp left over
    train = load_cifar100("train", root=root)
    assert train.images.shape == (12, 3, 32, 32) and train.images.dtype == np.uint8
    # CHW row-major: the first 1024 bytes of a row are the red plane
    np.testing.assert_array_equal(train.images[3, 0].ravel(), fake["train"][b"data"][3, :1024])
    np.testing.assert_array_equal(train.images.reshape(12, -1), fake["train"][b"data"])
    np.testing.assert_array_equal(train.labels, fake["train"][b"fine_labels"])
    np.testing.assert_array_equal(train.coarse_labels, fake["train"][b"coarse_labels"])
    np.testing.assert_array_equal(train.index, np.arange(12))
    assert train.label_names[7] == "fine7" and train.coarse_label_names[19] == "coarse19"
    test = load_cifar("cifar100", "test", root=root)
    assert len(test) == 5 and not test.complete
    np.testing.assert_array_equal(test.labels, fake["test"][b"fine_labels"])


def test_load_with_download_true_uses_archive(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "c10.tar.gz"
    fake = _fake_cifar10(src)
    arch = cifar.ARCHIVES["cifar10"]
    monkeypatch.setitem(
        cifar.ARCHIVES,
        "cifar10",
        cifar._Archive(src.resolve().as_uri(), _md5(src), arch.filename, arch.folder),
    )
    train = load_cifar10("train", root=tmp_path / "r", download=True, progress=False)
    assert len(train) == 20
    np.testing.assert_array_equal(train.labels, [1, 3, 5, 9] * 5)
    np.testing.assert_array_equal(train.images[4].ravel(), fake["data_batch_2"][b"data"][0])
    test = load_cifar10("test", root=tmp_path / "r")  # now cached, no download needed
    assert test.label_names == [f"c{i}" for i in range(10)]


def test_checksum_mismatch_raises_and_keeps_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.tar.gz"
    _fake_cifar100(src)
    root = tmp_path / "root"
    with pytest.raises(OSError, match="MD5 checksum mismatch"):
        download_cifar("cifar100", root, url=src.resolve().as_uri(), md5="0" * 32, progress=False)
    assert list(root.iterdir()) == []


def test_path_traversal_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "evil.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        _add(tar, "cifar-100-python/meta", b"x")
        _add(tar, "cifar-100-python/../../escaped", b"x")
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="unsafe"):
        download_cifar("cifar100", root, url=src.resolve().as_uri(), md5=_md5(src), progress=False)
    assert not (tmp_path / "escaped").exists()
    assert not (root / "cifar-100-python").exists()


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "link.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/meta")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(ValueError, match="not a regular file"):
        download_cifar("cifar100", tmp_path / "r", url=src.as_uri(), md5=_md5(src), progress=False)


def test_missing_data_error_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("STGMTL_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="STGMTL_DATA.*download=True"):
        load_cifar100("train", root=tmp_path)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="name: expected one of"):
        load_cifar("mnist")
    with pytest.raises(ValueError, match="split: expected one of"):
        load_cifar("cifar100", "validation")


def test_env_var_root(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STGMTL_DATA", str(tmp_path))
    assert cifar.resolve_data_root() == tmp_path
    monkeypatch.delenv("STGMTL_DATA")
    assert cifar.resolve_data_root() == Path.cwd() / "data"


def test_real_cifar100_npz(cifar_root: Path) -> None:
    test = load_cifar100("test", root=cifar_root)
    assert test.complete and test.images.shape == (10_000, 3, 32, 32)
    assert np.bincount(test.labels, minlength=100).tolist() == [100] * 100
    # documented first labels / red pixel (0, 0) of the official test split
    assert test.labels[:10].tolist() == [49, 33, 72, 51, 71, 92, 15, 14, 23, 0]
    assert test.images[:10, 0, 0, 0].tolist() == [199, 113, 61, 93, 80, 168, 37, 175, 233, 182]
    f2c = test.fine_to_coarse
    assert f2c is not None and (f2c[test.labels] == test.coarse_labels).all()
    assert test.label_names[0] == "apple" and len(test.coarse_label_names) == 20


def test_real_cifar10_is_partial_with_official_indices(cifar_root: Path) -> None:
    train = load_cifar10("train", root=cifar_root)
    test = load_cifar10("test", root=cifar_root)
    assert len(train) == 4_000 and len(test) == 9_966 and not test.complete
    assert (np.diff(test.index) > 0).all() and test.index.max() < 10_000
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert train.label_names[7] == "horse"


def test_extract_swaps_the_folder_in_whole_and_keeps_the_old_one_on_failure(tmp_path):
    import io
    import tarfile

    from stgmtl.datasets.cifar import _extract

    def archive(name: str, members: dict[str, bytes]) -> Path:
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as tar:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    root = tmp_path / "root"
    root.mkdir()
    first = archive("a.tar.gz", {"top/x.txt": b"1", "top/sub/y.txt": b"2"})
    target = _extract(first, root, "top")
    assert (target / "x.txt").read_bytes() == b"1" and (target / "sub" / "y.txt").exists()
    second = archive("b.tar.gz", {"top/x.txt": b"new"})
    _extract(second, root, "top")
    assert (target / "x.txt").read_bytes() == b"new" and not (target / "sub").exists()
    bad = archive("c.tar.gz", {"top/x.txt": b"bad", "../evil.txt": b"!"})
    with pytest.raises(ValueError, match="unsafe or unexpected path"):
        _extract(bad, root, "top")
    assert (target / "x.txt").read_bytes() == b"new"  # the earlier extraction is untouched
    assert sorted(p.name for p in root.iterdir()) == ["top"]  # no temp folders left behind
