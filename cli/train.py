"""rectflow train: a 1-rectified flow (or minibatch-OT flow matching) on a dataset."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from rectflow import api
from rectflow.api import DATASETS
from rectflow.options import TRAIN

from .options import (ConfigFile, EvalN, Evaluate, Overwrite, Resume, Threads, option_params,
                      use_threads, with_options)
from .progress import ProgressCallback
from .summary import print_stage


@with_options(option_params(TRAIN, section="train"))
def train(
    options: dict,
    data: Annotated[str, typer.Option(help=f"Dataset: {', '.join(DATASETS)}, an image folder, or a .npy/.npz/.safetensors [N, D] file.")] = "moons",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default checkpoints/<data>/rf1).")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="Local root of mnist/cifar10/imagefolder data.")] = None,
    download: Annotated[bool, typer.Option(help="Allow downloading mnist/cifar10 into --data-root.")] = False,
    resolution: Annotated[Optional[int], typer.Option(help="Images: resize to this size (default: the data's own, a folder's most common).", show_default=False)] = None,
    channels: Annotated[Optional[int], typer.Option(help="Images: 1 (grey) or 3 (RGB) (default: the data's own).", show_default=False)] = None,
    coupling: Annotated[str, typer.Option(help="independent (rectified flow) or ot (minibatch OT pairs).")] = "independent",
    hidden: Annotated[Optional[int], typer.Option(help="MLP: hidden width (default 256).")] = None,
    depth: Annotated[Optional[int], typer.Option(help="MLP: hidden layers (default 3).")] = None,
    width: Annotated[Optional[int], typer.Option(help="U-Net: base channels.")] = None,
    config: ConfigFile = None,
    evaluate: Evaluate = True,
    eval_n: EvalN = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    threads: Threads = None,
):
    """Train a 1-rectified flow: regress v(x_t, t) onto x1 - x0 with fresh noise x0."""
    model = {k: v for k, v in (("hidden", hidden), ("depth", depth), ("width", width))
             if v is not None}
    use_threads(threads)
    with ProgressCallback("train") as cb:
        flow = api.train(data, out=out, data_root=str(data_root) if data_root else None,
                         download=download, resolution=resolution, channels=channels,
                         coupling=coupling, model=model, resume=resume, overwrite=overwrite,
                         callback=cb, evaluate=evaluate, eval_n=eval_n, config=config,
                         **options)
    print_stage(flow.path)
