"""Matplotlib helpers shared by the demos' PNG panels (rows of images without ticks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def panel_grid(rows: int, titles: Sequence[str], cell: tuple[float, float],
               extra_height: float = 0.0) -> tuple[Any, Any]:
    """``(figure, axes[rows, len(titles)])`` on the Agg backend; each cell ``cell`` inches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, len(titles), squeeze=False,
                        figsize=(cell[0] * len(titles), cell[1] * rows + extra_height))


def show_row(axes: Sequence[Any], panels: Sequence[tuple[np.ndarray, dict[str, Any]]],
             titles: Sequence[str] | None = None) -> None:
    """``imshow`` each ``(image, imshow kwargs)`` into ``axes``, no ticks; ``titles`` on top."""
    for j, (img, kw) in enumerate(panels):
        ax = axes[j]
        ax.imshow(img, interpolation="nearest", **kw)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[j], fontsize=9)


def save_figure(fig: Any, path: Path, title: str) -> Path:
    """Add ``title``, lay out, write ``path`` (100 dpi, folders created) and close the figure."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
