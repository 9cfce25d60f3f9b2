"""The Accelerator every stage runs on."""
from __future__ import annotations

import os

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs

from ..errors import UserError


def make_accelerator(**kwargs) -> Accelerator:
    """An ``Accelerator`` that also shares the work under plain ``torchrun`` on CPUs.

    Accelerate only picks its multi-CPU (gloo) mode when told ``cpu=True``; under ``torchrun``
    on a machine without CUDA it would otherwise give every process a world of one.

    DDP does not broadcast buffers before each forward: rectflow's models hold only constant
    ones (time frequencies), equal on every process, and the broadcast, an in-place copy, breaks
    ``torch.func.jvp`` through the model (the meanflow objective)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        rank = int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        raise UserError("WORLD_SIZE and RANK must be whole numbers when set") from None
    if world > 1:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if missing or not 0 <= rank < world:
            raise UserError(f"WORLD_SIZE={world} is set but this process was not started by a "
                            f"launcher ({'no ' + ', '.join(missing) if missing else f'RANK={rank}'}"
                            "); unset it, or start with torchrun / accelerate launch")
        if not torch.cuda.is_available():
            kwargs["cpu"] = True
    if kwargs.get("mixed_precision") == "fp16" and not (torch.cuda.is_available()
                                                        or torch.backends.mps.is_available()):
        # Accelerate would silently train in float32: fp16 autocast is for GPUs
        raise UserError("mixed_precision fp16 needs a GPU; on CPU use bf16 (or no)")
    kwargs.setdefault("kwargs_handlers", [DistributedDataParallelKwargs(broadcast_buffers=False)])
    return Accelerator(**kwargs)
