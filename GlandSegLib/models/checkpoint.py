"""Load nnU-Net checkpoints without executing code from them.

A .pth file is a pickle: nnU-Net loads it with weights_only=False, which runs whatever the
file carries. Models travel between hospitals as zips, so GlandSeg loads with
weights_only=True and allows only the few globals a genuine nnU-Net checkpoint holds
(numpy scalars in the training log). Anything else is refused, naming what it asked for;
`trust=True` (the CLI's --trust-model) is the only way past that.
"""

from __future__ import annotations

import re
from pathlib import Path

from GlandSegLib.errors import ModelError


def _numpy_globals() -> list:
    import numpy as np

    allowed: list = [np.dtype, np.ndarray]
    try:
        from numpy._core.multiarray import _reconstruct, scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    allowed += [scalar, _reconstruct]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool")]
    return allowed


def load_checkpoint(path: Path, *, trust: bool = False) -> dict:
    import pickle

    import torch

    try:
        if trust:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_numpy_globals()):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        wanted = re.findall(r"(?:GLOBAL|global) ([\w.]+(?: [\w.]+)?)", str(exc))
        what = ", ".join(sorted(set(wanted))) or str(exc).splitlines()[0][:200]
        raise ModelError(
            f"{path}: the checkpoint asks to run or construct {what}, which a plain nnU-Net checkpoint never needs; "
            "refused. Load it only if you trust its origin (--trust-model)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{path}: corrupt or unreadable checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        raise ModelError(f"{path}: not an nnU-Net checkpoint (no network_weights)")
    return ckpt
