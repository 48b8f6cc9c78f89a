"""Where a training run writes its model, so that nothing the user had is lost.

- The ``--out`` path passes the output policy first (never an input image or labels file, never
  a file napari-unet did not write unless overwrite), and its folder must be writable.
- Without an earlier model at ``--out`` the run checkpoints straight to it.
- With an earlier model there, the run checkpoints to ``<stem>.checkpoint.pt`` beside it. A run
  that ends normally replaces ``--out``. An interrupted run replaces it only if it got further
  (more training steps in total than the earlier model); otherwise the earlier model stays and
  the interrupted weights stay in the checkpoint file. :meth:`TrainOutput.settle` says which.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .outputs import check_output, prepare_folder


def _total_steps(path: Path) -> int | None:
    from .io import read_model_meta

    try:
        training = read_model_meta(path).get("training") or {}
    except Exception:
        return None
    return int(training.get("total_steps") or training.get("steps") or 0)


def model_file_bytes(*, dims: int | None, base_channels: int | None, depth: int | None,
                     classes: int | None, device: str = "auto", init: str | None = None) -> int:
    """About how large the model file will be (to check the disk before training starts)."""
    if init is not None:
        try:
            return os.path.getsize(init)
        except OSError:
            return 0
    import torch

    from .device import resolve_device
    from .errors import UserError
    from .model import build_model
    from .train import default_architecture

    dims = dims if dims in (2, 3) else 2
    b0, d0 = default_architecture(resolve_device(device), dims)
    try:
        with torch.device("meta"):  # no memory: only the parameter count is wanted
            net = build_model(dims, 1, min(max(classes or 2, 2), 65535), base_channels or b0, depth or d0)
    except UserError:  # a bad --depth or --base-channels: said now, not as a disk-space estimate
        raise
    except Exception:  # anything else: training refuses it with its own message
        return 0
    return sum(t.numel() * t.element_size() for t in net.state_dict().values()) + (64 << 10)


class TrainOutput:
    def __init__(self, out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                 overwrite: bool = False, what: str = "--out", model_bytes: int = 0):
        self.out = Path(out)
        inputs = list(inputs)
        check_output(self.out, inputs=inputs, overwrite=overwrite, what=f"{what} model file", model=True)
        # room for the model and its next version (written beside it, then renamed)
        prepare_folder(self.out.parent, what=f"folder of {what}", nbytes=2 * model_bytes)
        self.previous = _total_steps(self.out) if self.out.exists() else None
        if self.out.exists():
            name = self.out.name[:-3] if self.out.name.endswith(".pt") else self.out.name
            self.checkpoint = self.out.with_name(f"{name}.checkpoint.pt")
            check_output(self.checkpoint, inputs=inputs, overwrite=overwrite, what="checkpoint file", model=True)
        else:
            self.checkpoint = self.out

    def settle(self, finished: bool) -> str:
        """Put the run's model where it belongs; return one sentence saying what is where."""
        ckpt, out = self.checkpoint, self.out
        if ckpt == out:
            if not out.exists():
                return f"nothing was saved ({out} was not written)"
            return f"wrote {out}" if finished else \
                f"saved the interrupted model ({_total_steps(out)} steps) to {out}"
        if not ckpt.exists():
            return f"nothing was saved; {out} is unchanged"
        new = _total_steps(ckpt) or 0
        if finished or self.previous is None or new > self.previous:
            os.replace(ckpt, out)
            if finished:
                return f"wrote {out}"
            return (f"saved the model ({new} steps) to {out}, replacing the earlier model there "
                    f"({self.previous if self.previous is not None else 'unknown'} steps) as this run got further")
        return (f"kept the earlier model at {out} ({self.previous} steps); this run's weights "
                f"({new} steps) are in {ckpt}")
