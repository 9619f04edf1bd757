"""Segmentation loss and metrics (docs/semantics.md §B.6): cross-entropy with the ignore label, the
confusion matrix, mIoU, pixel accuracy and mean class accuracy."""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["IGNORE_INDEX", "ConfusionMatrix", "segmentation_loss"]

IGNORE_INDEX = 255
"""The void label of VOC (skipped by the loss and the metrics)."""


def segmentation_loss(output: Tensor, label: Tensor, loss: str = "ce") -> Tensor:
    """pacnet's segmentation losses.

    Args:
        output: Logits or CRF ``log_Q`` ``[B, L, H, W]``.
        label: ``[B, H, W]`` integer labels; 255 = void.
        loss: ``'ce'`` (cross-entropy, mean over non-void pixels) or ``'fce_<t>'`` ("forgiving":
            per-pixel CE, values below ``−ln t`` set to 0, then the mean over **all** pixels).

    Returns:
        The scalar loss.

    Raises:
        ValueError: mismatched shapes or an unknown ``loss``.
    """
    if output.dim() != 4 or label.dim() != 3 or output.shape[0] != label.shape[0] \
            or output.shape[-2:] != label.shape[-2:]:
        raise ValueError(f"output [B, L, H, W] and label [B, H, W] must match, got output "
                         f"{tuple(output.shape)} and label {tuple(label.shape)}")
    label = label.long()
    if loss == "ce":
        return F.cross_entropy(output, label, ignore_index=IGNORE_INDEX)
    if loss.startswith("fce_"):
        try:
            t = float(loss[4:])
        except ValueError:
            t = float("nan")
        if not t > 0:
            raise ValueError(f"loss 'fce_<t>' needs a positive number t, got {loss!r}")
        ce = F.cross_entropy(output, label, ignore_index=IGNORE_INDEX, reduction="none")
        ce = torch.where(ce < -math.log(t), torch.zeros_like(ce), ce)
        return ce.mean()
    raise ValueError(f"loss must be 'ce' or 'fce_<t>', got {loss!r}")


class ConfusionMatrix:
    """A confusion matrix accumulated over a whole split.

    ``matrix[g, p]`` counts pixels of ground-truth class ``g`` predicted as ``p``; pixels whose
    label lies outside ``[0, num_classes)`` (the void label 255) are skipped.

    Args:
        num_classes: Number of classes (21 for VOC).

    Example:
        >>> cm = ConfusionMatrix(21)
        >>> cm.update(logits.argmax(1), label)
        >>> cm.miou()
    """

    def __init__(self, num_classes: int = 21) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self) -> None:
        """Zero the counts."""
        self.matrix[:] = 0

    def update(self, pred: Union[Tensor, np.ndarray], label: Union[Tensor, np.ndarray]) -> None:
        """Add a batch.

        Args:
            pred: Predicted classes (argmax), any shape.
            label: Ground truth of the same shape (255 = void).

        Raises:
            ValueError: shapes differ.
        """
        pred_t = torch.as_tensor(pred).detach().cpu().long()
        label_t = torch.as_tensor(label).detach().cpu().long()
        if pred_t.shape != label_t.shape:
            raise ValueError(f"pred and label must have the same shape, got {tuple(pred_t.shape)} "
                             f"and {tuple(label_t.shape)}")
        n = self.num_classes
        valid = (label_t >= 0) & (label_t < n)
        # predictions outside [0, n) can only come from a wrong model; count them as class 0
        p = pred_t[valid].clamp(0, n - 1)
        idx = label_t[valid] * n + p
        self.matrix += torch.bincount(idx, minlength=n * n).reshape(n, n).numpy()

    def iou(self) -> np.ndarray:
        """Per-class ``TP / (TP + FP + FN)`` (NaN for classes absent from labels and
        predictions)."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        denom = m.sum(0) + m.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return tp / denom

    def miou(self) -> float:
        """Mean IoU over the classes that occur (in the labels or the predictions)."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def acc(self) -> float:
        """Pixel accuracy."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def macc(self) -> float:
        """Mean per-class recall over the classes present in the labels."""
        m = self.matrix.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            rec = np.diag(m) / m.sum(1)
        return float(np.nanmean(rec)) if np.isfinite(rec).any() else float("nan")

    def summary(self) -> dict[str, float]:
        """``{'miou', 'acc', 'macc'}``."""
        return {"miou": self.miou(), "acc": self.acc(), "macc": self.macc()}
