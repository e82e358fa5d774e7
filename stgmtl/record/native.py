"""Optional native kernel of the recorder's CPU update for binary tasks, with a pure-torch fallback.

:class:`~stgmtl.record.DataMapRecorder` spends its CPU time in a handful of elementwise passes
and four scatters per batch (:mod:`stgmtl.record.update`). The C++ source beside this module
(``csrc/datamap_update.cpp``) does the same work in one pass over each batch row, after one
checking pass, and writes nothing if the check fails. For the compact layout
(:mod:`stgmtl.record.compact`) the check is fused into the update: one pass reads each input
once, and a refused batch is undone exactly (integer words; the target bits it set are kept in a
bitmap). It is plain C++ behind a C interface,
loaded with :mod:`ctypes`: no torch headers, no Python extension module, so it builds in about a
second with the system's C++ compiler and does not depend on the installed torch version.

Built on first use into ``$STGMTL_CACHE_DIR`` (default ``~/.cache/stgmtl``) under a name that
hashes the source, the compiler and the flags, so later processes load it at once and an edited
source or another compiler gets its own build. Set ``STGMTL_NATIVE=0`` to never build or use it
(the pure-torch update is then used, with identical statistics to float64 rounding), and
``CXX`` to choose the compiler. Where no compiler is found or the build fails, recording falls
back to the pure-torch update and :func:`native_status` says why.

Precision: the kernel computes ``p`` in the logits' precision: in float64 for float64 logits
(its ``exp`` a vectorisable Taylor polynomial with relative error below ``4e-16``), in float32
for float32 logits (half the memory per value and twice the vector lanes; absolute error of
``p`` below ``1e-7``, less than the float32 rounding the logits themselves carry). Sums are
float64 either way. ``tests/test_native.py`` checks both against the float64 numpy reference.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from stgmtl._io import atomic_file

__all__ = ["NativeKernel", "flips_size", "native_kernel", "native_status"]

_SOURCE = Path(__file__).with_name("csrc") / "datamap_update.cpp"
_ABI = 2  # bump with the C interface (stgmtl_datamap_abi)
_Z_CODES = {torch.float32: 0, torch.float64: 1}
_Y_CODES = {torch.float32: 0, torch.float64: 1, torch.bool: 2, torch.uint8: 2, torch.int8: 3,
            torch.int32: 4, torch.int64: 5}  # fmt: skip
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}  # "kernel": NativeKernel | None, "reason": str


def _compiler() -> str | None:
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx) or (cxx if Path(cxx).is_file() else None)
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _flags() -> list[str]:
    """Compiler flags: optimised, vectorisable (``-fno-trapping-math``), AVX2 where available."""
    flags = ["-O3", "-fno-trapping-math", "-std=c++17", "-shared", "-fPIC", "-pthread"]
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if x86 and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def _cache_dir() -> Path:
    root = os.environ.get("STGMTL_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stgmtl"


@dataclass(frozen=True)
class NativeKernel:
    """The loaded library and where it came from."""

    library: ctypes.CDLL
    path: Path

    def binary_update(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        mask: torch.Tensor | None,
        state: dict[str, torch.Tensor | None],
        *,
        validate: bool,
        threads: int,
    ) -> tuple[float, float, float, float, float] | None:
        """Check and add a binary batch; the checked values if the check refused it, else None.

        ``z`` float32/float64 ``(B, T)`` contiguous CPU, ``y`` of a dtype in ``_Y_CODES``,
        ``rows`` int64 ``(B,)`` state rows (negative: skip), ``mask`` bool or None (then
        ``state["missing"]`` may be None). Nothing is written when a check fails.
        """
        out = torch.zeros(5, dtype=torch.float64)
        missing = state.get("missing") if mask is not None else None
        p = ctypes.c_void_p
        ret = self.library.stgmtl_binary_update(
            _Z_CODES[z.dtype], _Y_CODES[y.dtype], p(z.data_ptr()), p(y.data_ptr()),
            p(mask.data_ptr() if mask is not None else None), p(rows.data_ptr()),
            z.shape[0], z.shape[1], state["s1"].shape[0],  # type: ignore[union-attr]
            *(p(state[k].data_ptr()) for k in ("s1", "s2", "correct", "targets")),  # type: ignore[union-attr]
            p(missing.data_ptr() if missing is not None else None),
            p(state["seen"].data_ptr()),  # type: ignore[union-attr]
            int(validate), max(1, int(threads)), p(out.data_ptr()),
        )  # fmt: skip
        if ret < 0:  # pragma: no cover - dtypes are mapped above
            raise RuntimeError(f"native kernel: unsupported dtypes {z.dtype}, {y.dtype}")
        if ret == 2:
            raise IndexError(f"rows: state row {int(out[0])} out of range")
        if ret == 1:
            zlo, zhi, ylo, yhi, bad = out.tolist()
            return zlo, zhi, ylo, yhi, bad
        return None

    def compact_update(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        rows: torch.Tensor,
        mask: torch.Tensor | None,
        state: dict[str, torch.Tensor | None],
        *,
        validate: bool,
        threads: int,
        flips: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
    ) -> tuple[float, float, float, float, float] | int | None:
        """Check and add a binary batch to a compact state in one pass (undone if refused).

        Arguments as :meth:`binary_update`; ``state`` holds ``packed``, ``seen`` and (with a
        mask) ``missing``; ``flips`` is int64 scratch of at least :func:`flips_size` values
        (allocated if not given); ``base`` (int64, one per state row, optional) holds counts
        kept elsewhere (an open per-epoch snapshot) that count towards the limit. Returns
        None when added, the checked values when the check refused the batch, or the count
        when a sample would pass the 255 observations its counters hold. Nothing is changed
        unless it returns None.
        """
        b, t = z.shape
        need = flips_size(b, t)
        if flips is None or flips.numel() < need:
            flips = torch.empty(max(need, 1), dtype=torch.int64)
        out = torch.zeros(5, dtype=torch.float64)
        missing = state.get("missing") if mask is not None else None
        p = ctypes.c_void_p
        ret = self.library.stgmtl_compact_update(
            _Z_CODES[z.dtype], _Y_CODES[y.dtype], p(z.data_ptr()), p(y.data_ptr()),
            p(mask.data_ptr() if mask is not None else None), p(rows.data_ptr()),
            b, t, state["packed"].shape[0],  # type: ignore[union-attr]
            p(state["packed"].data_ptr()),  # type: ignore[union-attr]
            p(missing.data_ptr() if missing is not None else None),
            p(state["seen"].data_ptr()),  # type: ignore[union-attr]
            p(base.data_ptr() if base is not None else None),
            p(flips.data_ptr()), int(validate), max(1, int(threads)), p(out.data_ptr()),
        )  # fmt: skip
        if ret < 0:  # pragma: no cover - dtypes are mapped above
            raise RuntimeError(f"native kernel: unsupported dtypes {z.dtype}, {y.dtype}")
        if ret == 2:
            raise IndexError(f"rows: state row {int(out[0])} out of range")
        if ret == 3:
            return int(out[0])
        if ret == 1:
            zlo, zhi, ylo, yhi, bad = out.tolist()
            return zlo, zhi, ylo, yhi, bad
        return None


def flips_size(batch: int, tasks: int) -> int:
    """int64 scratch values :meth:`NativeKernel.compact_update` needs: a bitmap and tile flags."""
    return batch * ((tasks + 63) // 64) + (batch * ((tasks + 1023) // 1024) + 7) // 8


def _build(cxx: str) -> Path:
    flags = _flags()
    version = subprocess.run(
        [cxx, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    key = hashlib.sha256(
        _SOURCE.read_bytes() + "\0".join([cxx, version, *flags, platform.machine()]).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"datamap_update-{key}.so"
    if target.is_file():
        return target
    with atomic_file(target) as tmp:
        res = subprocess.run(
            [cxx, *flags, str(_SOURCE), "-o", str(tmp)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"{cxx} failed: {(res.stderr or res.stdout).strip()[-500:]}")
    return target


def _load() -> tuple[NativeKernel | None, str]:
    if os.environ.get("STGMTL_NATIVE", "").strip().lower() in ("0", "off", "false", "no"):
        return None, "disabled by STGMTL_NATIVE=0"
    cxx = _compiler()
    if cxx is None:
        return None, "no C++ compiler found (set CXX, or install g++ or clang++)"
    try:
        path = _build(cxx)
        lib = ctypes.CDLL(str(path))
        if lib.stgmtl_datamap_abi() != _ABI:
            return None, f"{path} has another interface version; delete it to rebuild"
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        return None, f"build or load failed: {err}"
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.stgmtl_binary_update.restype = ctypes.c_int
    cint = ctypes.c_int
    lib.stgmtl_binary_update.argtypes = [cint, cint, vp, vp, vp, vp, i64, i64, i64,
                                         vp, vp, vp, vp, vp, vp, cint, cint, vp]  # fmt: skip
    lib.stgmtl_compact_update.restype = ctypes.c_int
    lib.stgmtl_compact_update.argtypes = [cint, cint, vp, vp, vp, vp, i64, i64, i64,
                                          vp, vp, vp, vp, vp, cint, cint, vp]  # fmt: skip
    return NativeKernel(lib, path), "loaded"


def native_kernel() -> NativeKernel | None:
    """The native kernel, built on first call (about a second); ``None`` if unavailable."""
    with _LOCK:
        if "reason" not in _STATE:
            kernel, reason = _load()
            _STATE.update(kernel=kernel, reason=reason)
        return _STATE["kernel"]  # type: ignore[return-value]


def native_status() -> dict[str, str | bool | None]:
    """Whether the native kernel is in use: ``available``, ``reason``, ``path`` (builds it)."""
    kernel = native_kernel()
    return {
        "available": kernel is not None,
        "reason": str(_STATE["reason"]),
        "path": None if kernel is None else str(kernel.path),
    }
