"""Figures of the documentation site, computed from the Middlebury motorcycle image.

Run by ``nox -s docs`` before ``mkdocs build``; writes PNGs to ``docs/_generated/figures/``
(git-ignored). The per-pixel kernels come from ``pac_core.packernel2d`` when pac-core is
importable and its functional ops work; otherwise from a NumPy transcription of the same formula
(``K = exp(-|f(tap) - f(centre)|^2 / 2)`` for the gaussian type, ``alpha + (D + 1e-4)^(lambda/2)``
for the ``inv`` types), and the script says which one it used.

    python docs/scripts/make_figures.py [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "_generated" / "figures"
GAUSS3 = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25]).astype(np.float32)
DPI = 100


# -- the adaptive kernel ------------------------------------------------------------------------
def numpy_packernel(feat, k, dilation=1, kernel_type="gaussian", smooth=None, alpha=None, lam=None):
    """Per-pixel kernel ``[k, k, H, W]`` of guidance ``feat`` ``[C, H, W]`` (stride 1, same size).

    Zero padding outside the image, as in pac_core; ``smooth`` is an odd 2-D filter applied to the
    guidance before the centre feature is read.
    """
    _, h, w = feat.shape
    pad = (k - 1) // 2 * dilation
    padded = np.pad(feat, ((0, 0), (pad, pad), (pad, pad)))
    centre = feat
    if smooth is not None:
        m = smooth.shape[0] // 2
        sp = np.pad(feat, ((0, 0), (m, m), (m, m)))
        centre = sum(
            smooth[u, v] * sp[:, u : u + h, v : v + w]
            for u in range(smooth.shape[0])
            for v in range(smooth.shape[1])
        )
    dist = np.empty((k, k, h, w), np.float32)
    for a in range(k):
        for e in range(k):
            delta = padded[:, a * dilation : a * dilation + h, e * dilation : e * dilation + w]
            delta = delta - centre
            if "_asym" in kernel_type:
                delta = np.maximum(delta, 0)
            dist[a, e] = (delta**2).sum(0)
    if kernel_type == "gaussian":
        return np.exp(-0.5 * dist)
    return alpha + (dist + 1e-4) ** (lam / 2)


def _pac_core_kernel():
    """``pac_core.packernel2d`` wrapped to the NumPy signature, or None when it is not usable."""
    src = ROOT / "packages" / "pac-core" / "src"
    try:
        import torch

        try:
            import pac_core
        except ImportError:
            sys.path.insert(0, str(src))
            import pac_core
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "native extension missing": reference is fine here

            def kernel(feat, k, dilation=1, kernel_type="gaussian", smooth=None, alpha=None,
                       lam=None):
                kwargs = {}
                if smooth is not None:
                    kwargs.update(smooth_kernel_type="gaussian",
                                  smooth_kernel=torch.from_numpy(smooth)[None, None])
                if alpha is not None:
                    kwargs.update(inv_alpha=torch.tensor(float(alpha)),
                                  inv_lambda=torch.tensor(float(lam)))
                with torch.no_grad():
                    out = pac_core.packernel2d(
                        torch.from_numpy(np.ascontiguousarray(feat))[None],
                        kernel_size=k, padding=(k - 1) // 2 * dilation, dilation=dilation,
                        kernel_type=kernel_type, **kwargs)
                return (out[0] if isinstance(out, tuple) else out)[0, 0].numpy()

            # Check it on a small case against the formula before trusting it.
            rng = np.random.default_rng(0)
            probe = rng.normal(size=(3, 9, 11)).astype(np.float32)
            for args in ({}, {"smooth": GAUSS3}, {"kernel_type": "inv_0.5_-1_asym", "alpha": 0.5,
                                                 "lam": -1.0}):
                got = kernel(probe, 5, 2, **args)
                want = numpy_packernel(probe, 5, 2, **args)
                if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
                    print(f"make_figures: pac_core.packernel2d disagrees with the formula ({args});"
                          " using NumPy", file=sys.stderr)
                    return None
        return kernel
    except Exception as exc:  # pac_core not there yet, or its ops not written yet
        print(f"make_figures: pac_core.packernel2d not usable ({type(exc).__name__}: {exc}); "
              "using the NumPy formula", file=sys.stderr)
        return None


# -- data -----------------------------------------------------------------------------------------
def load_middlebury():
    """RGB in [0, 1] ``[H, W, 3]`` and disparity ``[H, W]`` with NaN where it is unknown."""
    from skimage import data

    image, _, disparity = data.stereo_motorcycle()
    disparity = disparity.astype(np.float32)
    disparity[~np.isfinite(disparity)] = np.nan
    return image.astype(np.float32) / 255, disparity


def fill_nearest(disp):
    from scipy import ndimage

    invalid = np.isnan(disp)
    idx = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return disp[tuple(idx)]


def rgb_feat(img, sigma):
    return np.ascontiguousarray(img.transpose(2, 0, 1) / sigma)


def taps(x, k, dilation):
    """Windows of ``x`` ``[H, W]``: ``[k, k, H, W]`` (zero padding, stride 1, same size)."""
    h, w = x.shape
    pad = (k - 1) // 2 * dilation
    xp = np.pad(x, pad)
    return np.stack([np.stack([xp[a * dilation : a * dilation + h, e * dilation : e * dilation + w]
                               for e in range(k)]) for a in range(k)])


# -- figures --------------------------------------------------------------------------------------
def _imshow_kernel(ax, kern, title):
    """Show a kernel; the colour scale ends at the largest tap other than the centre."""
    others = kern.copy()
    others[kern.shape[0] // 2, kern.shape[1] // 2] = 0
    ax.imshow(kern, cmap="magma", vmin=0, vmax=others.max() or 1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def fig_kernels(kernel, img, out):
    """The home-page picture: kernels at pixels on and away from edges."""
    crop = img[100:300, 120:420]
    k = 21
    kmap = kernel(rgb_feat(crop, 0.2), k)
    points = [("flat", (130, 150)), ("edge", (118, 100)),
              ("edge", (150, 185)), ("thin line", (170, 60)),
              ("texture", (40, 150))]
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    fig = plt.figure(figsize=(10, 4.2))
    grid = fig.add_gridspec(2, len(points) + 3, height_ratios=[1, 1])
    ax = fig.add_subplot(grid[:, :3])
    ax.imshow(crop)
    ax.set_title("guidance (Middlebury motorcycle)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    r = k // 2
    for (_, (y, x)), col in zip(points, colours):
        ax.add_patch(Rectangle((x - r - 0.5, y - r - 0.5), k, k, fill=False, ec=col, lw=1.5))
    for i, ((name, (y, x)), col) in enumerate(zip(points, colours)):
        patch = crop[y - r : y + r + 1, x - r : x + r + 1]
        pa = fig.add_subplot(grid[0, 3 + i])
        pa.imshow(patch, interpolation="nearest")
        pa.set_title(name, fontsize=9, color=col)
        pa.set_xticks([])
        pa.set_yticks([])
        _imshow_kernel(fig.add_subplot(grid[1, 3 + i]), kmap[:, :, y, x], f"K at ({y}, {x})")
    fig.suptitle("Pixel-adaptive kernels: each pixel's 21×21 kernel follows the image around it",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "kernels.png", dpi=DPI)
    plt.close(fig)


def fig_kernel_types(kernel, img, out):
    crop = img[100:300, 120:420]
    feat = rgb_feat(crop, 0.08)
    y, x = 118, 100
    k, r = 15, 7
    variants = [
        ("gaussian", {}),
        ("inv_0.5_-1", {"kernel_type": "inv_0.5_-1", "alpha": 0.5, "lam": -1.0}),
        ("inv_0.5_-1_asym", {"kernel_type": "inv_0.5_-1_asym", "alpha": 0.5, "lam": -1.0}),
        ("gaussian, dilation 2", {"dilation": 2}),
    ]
    fig, axes = plt.subplots(1, len(variants) + 1, figsize=(10, 2.6))
    axes[0].imshow(crop[y - 2 * r : y + 2 * r + 1, x - 2 * r : x + 2 * r + 1],
                   interpolation="nearest")
    axes[0].set_title("guidance around the pixel", fontsize=9)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    for ax, (name, kw) in zip(axes[1:], variants):
        kmap = kernel(feat, k, **kw)
        kern = kmap[:, :, y, x]
        _imshow_kernel(ax, kern, f"{name}\ncentre {kern[k // 2, k // 2]:.3g}")
    fig.tight_layout()
    fig.savefig(out / "kernel_types.png", dpi=DPI)
    plt.close(fig)


def fig_smoothing(kernel, img, out):
    crop = img[100:300, 120:420]
    rng = np.random.default_rng(1)
    noisy = np.clip(crop + rng.normal(scale=0.06, size=crop.shape).astype(np.float32), 0, 1)
    feat = rgb_feat(noisy, 0.12)
    k = 11
    plain = kernel(feat, k)
    smooth = kernel(feat, k, smooth=GAUSS3)
    points = [(150, 185), (118, 100), (90, 110)]
    fig, axes = plt.subplots(2, len(points) + 1, figsize=(9, 4.4))
    for row in range(2):
        axes[row, 0].imshow(noisy)
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
    axes[0, 0].set_title("noisy guidance", fontsize=9)
    for i, (y, x) in enumerate(points):
        for row in range(2):
            axes[row, 0].plot(x, y, "c+", ms=8)
        _imshow_kernel(axes[0, i + 1], plain[:, :, y, x], f"'none' at ({y}, {x})")
        _imshow_kernel(axes[1, i + 1], smooth[:, :, y, x], f"'gaussian' at ({y}, {x})")
    fig.suptitle("smooth_kernel_type: the centre feature read raw (top) or smoothed (bottom)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "smoothing.png", dpi=DPI)
    plt.close(fig)


def fig_masked_fill(kernel, img, disp, out):
    """normalize_kernel + mask: fill the holes of the disparity map, guided by the image."""
    sl = (slice(100, 400), slice(60, 460))
    rgb, d = img[sl][::2, ::2], disp[sl][::2, ::2]
    mask = np.isfinite(d).astype(np.float32)
    d0 = np.nan_to_num(d)
    k, dil = 9, 2
    kmap = kernel(rgb_feat(rgb, 0.06), k, dilation=dil)
    num_g = (kmap * taps(mask * d0, k, dil)).sum((0, 1))
    den_g = (kmap * taps(mask, k, dil)).sum((0, 1))
    num_b = taps(mask * d0, k, dil).sum((0, 1))
    den_b = taps(mask, k, dil).sum((0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        guided = np.where(den_g > 1e-6, num_g / den_g, np.nan)
        box = np.where(den_b > 0, num_b / den_b, np.nan)
    vmin, vmax = np.nanpercentile(d, [1, 99])
    panels = [(rgb, "guidance"), (np.where(mask > 0, d, np.nan), "disparity (white: unknown)"),
              (box, "masked average (no guidance)"), (guided, "masked PAC, normalised")]
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.5))
    for ax, (im, title) in zip(axes, panels):
        ax.imshow(im, cmap=None if im.ndim == 3 else "viridis", vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "masked_fill.png", dpi=DPI)
    plt.close(fig)


def linear_profile(k, s):
    z = (k - (2 * s - 1)) // 2
    ramp = [i / s for i in range(1, s)] + [1.0] + [i / s for i in range(s - 1, 0, -1)]
    return np.array([0.0] * z + ramp + [0.0] * z, np.float32)


def fig_upsampling(kernel, img, disp, out):
    """Transposed PAC: 4x joint upsampling of the disparity ('linear' filler, normalised)."""
    s = 4
    full = fill_nearest(disp)[:496:2, :736:2]
    known = np.isfinite(disp[:496:2, :736:2])
    rgb = img[:496:2, :736:2]
    h, w = full.shape
    k = 2 * s - 1
    # the zero-insertion grid of the transposed op: each low-res sample at its high-res position
    low = full[s // 2 :: s, s // 2 :: s]
    grid = np.zeros((h, w), np.float32)
    valid = np.zeros((h, w), np.float32)
    grid[s // 2 :: s, s // 2 :: s] = low
    valid[s // 2 :: s, s // 2 :: s] = 1
    lin = np.outer(linear_profile(k, s), linear_profile(k, s))[:, :, None, None]
    kmap = kernel(rgb_feat(rgb, 0.2), k)
    grid_taps, valid_taps = taps(grid, k, 1), taps(valid, k, 1)
    bilinear = (lin * grid_taps).sum((0, 1)) / np.maximum((lin * valid_taps).sum((0, 1)), 1e-8)
    den = (lin * kmap * valid_taps).sum((0, 1))
    guided = np.where(den > 1e-6, (lin * kmap * grid_taps).sum((0, 1)) / np.maximum(den, 1e-6),
                      bilinear)
    rmse_b = float(np.sqrt(np.mean((bilinear - full)[known] ** 2)))
    rmse_g = float(np.sqrt(np.mean((guided - full)[known] ** 2)))
    vmin, vmax = np.percentile(full, [1, 99])
    panels = [(np.kron(low, np.ones((s, s))), f"input {low.shape[0]}×{low.shape[1]} (1/{s})"),
              (bilinear, f"linear filler alone, RMSE {rmse_b:.2f}"),
              (guided, f"PAC transposed, RMSE {rmse_g:.2f}"), (full, "reference")]
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.4))
    for ax, (im, title) in zip(axes, panels):
        ax.imshow(im, cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "upsampling.png", dpi=DPI)
    plt.close(fig)
    return rmse_b, rmse_g


def fig_crf(kernel, img, out):
    """Mean-field PacCRF (Potts, non-spatial): noisy two-label unaries cleaned along image edges."""
    rgb = img[::2, ::2]
    h, w = rgb.shape[:2]
    redness = rgb[..., 0] - 0.5 * (rgb[..., 1] + rgb[..., 2])
    truth = (redness > 0.25).astype(np.float32)
    rng = np.random.default_rng(2)
    logit = 2.0 * (truth - 0.5) + rng.normal(scale=1.2, size=truth.shape).astype(np.float32)
    unary = np.stack([-logit / 2, logit / 2])
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    feat = np.concatenate([np.stack([yy / 20, xx / 20]), rgb_feat(rgb, 0.1)])
    k, dil = 11, 2
    kmap = kernel(feat, k, dilation=dil)
    kmap[k // 2, k // 2] = 0  # 'crf_pool' filler: no message from the pixel to itself
    log_q = unary.copy()
    for _ in range(5):
        q = np.exp(log_q - log_q.max(0))
        q /= q.sum(0)
        messages = np.stack([(kmap * taps(q[label], k, dil)).sum((0, 1)) for label in range(2)])
        log_q = unary + 0.1 * messages  # Potts: the negated pairwise weight rewards agreement
    before = (unary.argmax(0) == truth).mean()
    after = (log_q.argmax(0) == truth).mean()
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.3))
    panels = [(rgb, "image"), (truth, "labels to recover (red paint)"),
              (unary.argmax(0), f"noisy unary: {before:.0%} right"),
              (log_q.argmax(0), f"5 mean-field steps: {after:.0%} right")]
    for ax, (im, title) in zip(axes, panels):
        ax.imshow(im, cmap=None if im.ndim == 3 else "gray", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "crf.png", dpi=DPI)
    plt.close(fig)


# -- low-resolution sampling of depth.upsample -------------------------------------------------
def fig_sampling(out):
    """Where a low-resolution sample sits on the RGB grid for ``sampling='center'`` and
    ``'area'`` (factor 4, two blocks by two)."""
    f, n = 4, 2
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.9))
    titles = ("sampling='center': pixel ⌊(f−1)/2⌋ of each block\n(decimated / strided maps)",
              "sampling='area': mean of each block, centred at (f−1)/2\n(ToF / structured-light "
              "sensors, F.interpolate(mode='area'))")
    for ax, title, mode in zip(axes, titles, ("center", "area")):
        for i in range(n * f + 1):
            lw = 1.6 if i % f == 0 else 0.4
            ax.plot([0, n * f], [i, i], color="0.3", lw=lw)
            ax.plot([i, i], [0, n * f], color="0.3", lw=lw)
        for by in range(n):
            for bx in range(n):
                if mode == "center":
                    c = (f - 1) // 2
                    ax.add_patch(Rectangle((bx * f + c, by * f + c), 1, 1, color="tab:orange",
                                           alpha=0.7))
                    cy = cx = c + 0.5
                else:
                    ax.add_patch(Rectangle((bx * f, by * f), f, f, color="tab:blue", alpha=0.25))
                    cy = cx = f / 2
                ax.plot(bx * f + cx, by * f + cy, "o", color="k", ms=6)
        ax.set_xlim(-0.2, n * f + 0.2)
        ax.set_ylim(n * f + 0.2, -0.2)
        ax.set_aspect("equal")
        ax.set_xticks(np.arange(n * f) + 0.5, [str(i) for i in range(n * f)], fontsize=7)
        ax.set_yticks(np.arange(n * f) + 0.5, [str(i) for i in range(n * f)], fontsize=7)
        ax.set_title(title, fontsize=8.5)
    fig.suptitle("Low-resolution sample (black dot) on the RGB pixel grid, factor 4", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "sampling.png", dpi=DPI)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    kernel = _pac_core_kernel()
    source = "pac_core.packernel2d" if kernel is not None else "NumPy formula"
    kernel = kernel or numpy_packernel
    img, disp = load_middlebury()
    fig_kernels(kernel, img, args.out)
    fig_kernel_types(kernel, img, args.out)
    fig_smoothing(kernel, img, args.out)
    fig_masked_fill(kernel, img, disp, args.out)
    rmse = fig_upsampling(kernel, img, disp, args.out)
    fig_crf(kernel, img, args.out)
    fig_sampling(args.out)
    (args.out / "SOURCE.txt").write_text(f"{source}\nupsampling RMSE linear/PAC: {rmse}\n")
    print(f"make_figures: wrote {len(list(args.out.glob('*.png')))} figures to {args.out} "
          f"with {source} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
