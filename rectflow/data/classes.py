"""One class of a labelled dataset as a dataset of its own: ``digits:3`` or ``digits:3,8``.

A class subset is the spec of its dataset with ``classes`` added (``{"name": "digits",
"classes": [3]}``); it keeps the dataset's splits, so its held-out images are the held-out
images of those classes. Labels are read for scikit-learn's digits (the permutation of
:func:`rectflow.data.images.load_digits`, so the images are the same ones).
"""
from __future__ import annotations

import torch

from ..errors import DataError
from .base import ArrayDataset

LABELLED = ("digits",)


def parse_classes(data: str) -> tuple[str, list[int]] | None:
    """``'digits:3,8'`` -> ``('digits', [3, 8])``; None when ``data`` names no class subset."""
    name, sep, tail = data.rpartition(":")
    if not sep or name not in LABELLED:
        if sep and name in ("mnist", "cifar10"):
            raise DataError(f"class subsets ({data!r}) are available for {', '.join(LABELLED)}; "
                            f"train a conditional {name} model instead")
        return None
    try:
        classes = sorted({int(c) for c in tail.split(",") if c.strip()})
    except ValueError:
        raise DataError(f"{data!r}: after ':' give class numbers, e.g. {name}:3 or {name}:3,8") \
            from None
    if not classes or min(classes) < 0 or max(classes) > 9:
        raise DataError(f"{data!r}: {name} classes are 0..9")
    return name, classes


def digit_labels(split: str) -> torch.Tensor:
    """Labels of ``load_digits(split)``'s images, in the same order."""
    from sklearn.datasets import load_digits as sk_load_digits
    target = torch.from_numpy(sk_load_digits().target)
    perm = torch.randperm(len(target), generator=torch.Generator().manual_seed(0))
    idx = perm[:1500] if split == "train" else perm[-297:]
    return target[idx]


def class_subset(ds: ArrayDataset, spec: dict, split: str) -> ArrayDataset:
    """The rows of ``ds`` whose label is one of ``spec['classes']``."""
    labels = digit_labels(split)
    keep = torch.isin(labels, torch.tensor(spec["classes"]))
    if int(keep.sum()) < 2:
        raise DataError(f"{spec['name']} classes {spec['classes']} have fewer than 2 {split} "
                        "images")
    return ArrayDataset(ds.data[keep], name=ds.name, is_image=ds.is_image,
                        normalization=ds.normalization)
