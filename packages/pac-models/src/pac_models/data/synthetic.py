"""Synthetic RGB-D scenes for training joint depth upsampling without a download.

A "dead leaves" model: random shapes (ellipses, rotated rectangles, triangles) with power-law sizes
are stacked from far to near, each carrying a slanted depth plane and a colour, so every depth edge
is an occlusion boundary that is also a colour edge. On top, each surface gets colour texture that
has **no** depth edge (stripes, soft blobs, painted "decal" shapes, shading along the slant), so a
model cannot simply copy every colour edge into the depth. The RGB is rendered with 2× supersampling
(anti-aliased edges), a slight optical blur and sensor-like noise (signal-dependent shot noise plus
read noise, then 8-bit quantisation). Depth is in metres (NYU-like range 0.5–10 m by default).

Generation is deterministic per ``(seed, index)`` and takes a few milliseconds per 128×128 scene.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
from torch.utils.data import Dataset

from .joint import AssembleJointUpsamplingInputs, JointSample

__all__ = ["PHOTO_TEXTURES", "SceneConfig", "SyntheticScenes", "dead_leaves_scene",
           "fractal_noise", "photo_textures"]

PHOTO_TEXTURES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "brick",
                  "grass", "gravel", "camera", "moon", "clock", "coins")
"""The :mod:`skimage.data` samples that :attr:`SceneConfig.photo_prob` paints surfaces with
(colour photos and greyscale textures, which get a random tint). The Middlebury motorcycle, the
real evaluation sample of this package, is deliberately not among them."""


@dataclass(frozen=True)
class SceneConfig:
    """Parameters of :func:`dead_leaves_scene`.

    Attributes:
        n_shapes: Range of the number of occluding shapes.
        radius: Range of shape radii as fractions of the image diagonal (density ∝ r⁻²).
        depth_range: ``(near, far)`` in metres.
        max_slant: Largest depth change across a shape's radius, as a fraction of its depth.
        decal_prob: Probability that a shape only paints colour (a texture without a depth edge).
        stripe_prob: Probability that a surface gets colour stripes.
        blob_prob: Probability that a surface gets smooth colour blobs.
        shading: Strength of the brightness gradient along each plane's slant.
        blur_sigma: Optical blur (pixels at output resolution) before the noise.
        read_noise: Read-noise std of the RGB in [0, 1].
        shot_noise: Shot-noise scale (variance ``shot_noise · intensity``).
        fractal_prob: Probability that a surface also gets fractal colour texture (a 1/f^β
            noise field, like the fine texture of real surfaces, with no depth edge); 0 keeps
            the scenes of every seed exactly as before the option existed.
        fractal_amplitude: Range of that texture's amplitude (RGB in [0, 1]).
        fractal_beta: Range of the spectral exponent β (larger: smoother).
        camouflage_prob: Probability that a shape takes nearly the mean colour of what it
            occludes (a depth edge with little colour contrast, common in real scenes and the
            case where colour guidance misleads); 0 draws nothing, as before the option.
        camouflage_std: Std of that colour's offset from the occluded mean (RGB in [0, 1]).
        thin_prob: Probability that a shape is a thin bar (a pole, a spoke: thinner than a
            low-resolution pixel at large factors); 0 draws nothing, as before the option.
        thin_width: Range of the bars' widths in output pixels.
        photo_prob: Probability that a surface is painted with a crop of a natural photo
            (:data:`PHOTO_TEXTURES`, scikit-image's bundled samples, never the Middlebury
            motorcycle) instead of a flat colour: colour edges and shading with real-image
            statistics inside surfaces that have no depth edge (the FlyingChairs idea); 0
            draws nothing, as before the option.
        photo_zoom: Range of the photo's magnification (output pixels per photo pixel).
        supersample: Samples per output pixel and axis of the rendering: the RGB is the box
            average of ``supersample²`` samples, the depth their middle sample. An odd value
            puts that sample at the pixel centre, aligned with the RGB; 3 is the one to train
            with. The default 2 keeps the scenes of every seed exactly as they were, but its
            depth sample lies ¼ px below and right of the RGB pixel's centre: a model trained
            on it (random horizontal flips only) learns to place horizontal depth edges with
            that bias, which real data does not have.
    """

    n_shapes: tuple[int, int] = (20, 60)
    radius: tuple[float, float] = (0.025, 0.4)
    depth_range: tuple[float, float] = (0.5, 10.0)
    max_slant: float = 0.3
    decal_prob: float = 0.25
    stripe_prob: float = 0.3
    blob_prob: float = 0.3
    shading: float = 0.25
    blur_sigma: float = 0.5
    read_noise: float = 0.01
    shot_noise: float = 0.002
    fractal_prob: float = 0.0
    fractal_amplitude: tuple[float, float] = (0.03, 0.2)
    fractal_beta: tuple[float, float] = (1.0, 2.0)
    camouflage_prob: float = 0.0
    camouflage_std: float = 0.04
    thin_prob: float = 0.0
    thin_width: tuple[float, float] = (1.0, 4.0)
    photo_prob: float = 0.0
    photo_zoom: tuple[float, float] = (0.5, 2.0)
    supersample: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.supersample, bool) or not isinstance(self.supersample, int) \
                or self.supersample < 1:
            raise ValueError(f"supersample must be an integer ≥ 1, got {self.supersample!r}")


def fractal_noise(rng: np.random.Generator, height: int, width: int, beta: float) -> np.ndarray:
    """A ``[H, W]`` noise field with power spectrum ∝ 1/f^β, zero mean and unit std."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) * f ** (-beta / 2)
    spec[0, 0] = 0.0
    field = np.fft.irfft2(spec, s=(height, width))
    return (field / max(float(field.std()), 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def photo_textures() -> tuple[np.ndarray, ...]:
    """The :data:`PHOTO_TEXTURES` as float32 ``[H, W, 3]`` arrays in [0, 1] (loaded once)."""
    from skimage import data

    out = []
    for name in PHOTO_TEXTURES:
        img = np.asarray(getattr(data, name)(), dtype=np.float32) / 255.0
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(img[..., :3]))
    return tuple(out)


def _photo(rng: np.random.Generator, cfg: SceneConfig, yy: np.ndarray, xx: np.ndarray,
           base: np.ndarray) -> np.ndarray:
    """A random window of a random photo over the pixels ``(yy, xx)`` (mirrored at its borders),
    magnified by ``cfg.photo_zoom``, its colours tinted towards ``base``."""
    from scipy.ndimage import map_coordinates

    bank = photo_textures()
    img = bank[int(rng.integers(len(bank)))]
    zoom = rng.uniform(*cfg.photo_zoom) * cfg.supersample  # photo pixels in render samples
    theta = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(theta), np.sin(theta)
    oy, ox = rng.uniform(0, img.shape[0]), rng.uniform(0, img.shape[1])
    dy, dx = (yy - yy.min()) / zoom, (xx - xx.min()) / zoom
    py, px = oy + c * dy - s * dx, ox + s * dy + c * dx
    col = np.stack([map_coordinates(img[..., k], [py, px], order=1, mode="mirror")
                    for k in range(3)], axis=-1)
    tint = 0.5 + base  # in [0.55, 1.45]: a colour cast without hiding the photo
    return (col * tint * rng.uniform(0.6, 1.2)).astype(np.float32)


def _shape_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
                r: float) -> np.ndarray:
    kind = rng.integers(0, 3)
    theta = rng.uniform(0, np.pi)
    c, s = np.cos(theta), np.sin(theta)
    dy, dx = yy - cy, xx - cx
    u, v = c * dx + s * dy, -s * dx + c * dy
    aspect = rng.uniform(0.4, 1.0)
    if kind == 0:  # ellipse
        return (u / r) ** 2 + (v / (r * aspect)) ** 2 <= 1.0
    if kind == 1:  # rotated rectangle
        return (np.abs(u) <= r) & (np.abs(v) <= r * aspect)
    # triangle: three half-planes around the centre
    angles = theta + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
    mask = np.ones(yy.shape, bool)
    for a in angles:
        mask &= np.cos(a) * dx + np.sin(a) * dy <= r * 0.5
    return mask


def _bar_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
              r: float, half_width: float) -> np.ndarray:
    """A thin bar of length ``2r`` and the given half width through ``(cy, cx)``."""
    theta = rng.uniform(0, np.pi)
    c, s = np.cos(theta), np.sin(theta)
    dy, dx = yy - cy, xx - cx
    return (np.abs(c * dx + s * dy) <= r) & (np.abs(-s * dx + c * dy) <= half_width)


def _texture(rng: np.random.Generator, cfg: SceneConfig, yy: np.ndarray, xx: np.ndarray,
             base: np.ndarray, scale: float) -> np.ndarray:
    """Colour ``[..., 3]`` of a surface: base colour plus depth-free texture."""
    col = np.broadcast_to(base, (*yy.shape, 3)).copy()
    if rng.random() < cfg.stripe_prob:
        period = rng.uniform(0.02, 0.15) * scale
        a = rng.uniform(0, np.pi)
        phase = (np.cos(a) * xx + np.sin(a) * yy) / period
        wave = np.sin(2 * np.pi * phase)
        if rng.random() < 0.5:
            wave = np.sign(wave)  # hard-edged stripes: colour edges with no depth edge
        col += rng.uniform(0.1, 0.35) * wave[..., None] * rng.uniform(-1, 1, 3)
    if rng.random() < cfg.blob_prob:
        for _ in range(rng.integers(1, 4)):
            by, bx = rng.uniform(yy.min(), yy.max() + 1), rng.uniform(xx.min(), xx.max() + 1)
            br = rng.uniform(0.03, 0.2) * scale
            g = np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * br**2))
            col += g[..., None] * rng.uniform(-0.4, 0.4, 3)
    return col


def dead_leaves_scene(
    height: int, width: int, rng: Union[np.random.Generator, int, None] = None,
    config: Optional[SceneConfig] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic RGB-D scene.

    Args:
        height: Output height.
        width: Output width.
        rng: Random generator or seed.
        config: Scene parameters (default :class:`SceneConfig`).

    Returns:
        ``(rgb uint8 [H, W, 3], depth float32 [H, W])``, depth in metres within
        ``config.depth_range``.
    """
    cfg = config or SceneConfig()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    ss = cfg.supersample
    hh, ww = height * ss, width * ss
    yy, xx = np.meshgrid(np.arange(hh, dtype=np.float32) + 0.5,
                         np.arange(ww, dtype=np.float32) + 0.5, indexing="ij")
    diag = float(np.hypot(hh, ww))
    near, far = cfg.depth_range
    # fractal texture: one field per scene, each textured surface takes its window of it with
    # its own amplitude and colour direction (no draws at all when the option is off)
    field = None
    if cfg.fractal_prob > 0:
        field = fractal_noise(rng, hh, ww, rng.uniform(*cfg.fractal_beta))

    def fractal(col: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
        if field is None or rng.random() >= cfg.fractal_prob:
            return col
        direction = rng.uniform(0.3, 1.0) + rng.uniform(-0.3, 0.3, 3)  # mostly brightness
        return col + rng.uniform(*cfg.fractal_amplitude) * field[ys, xs, None] * direction

    def surface(sy: np.ndarray, sx: np.ndarray, base: np.ndarray, scale: float) -> np.ndarray:
        if cfg.photo_prob > 0 and rng.random() < cfg.photo_prob:
            return _photo(rng, cfg, sy, sx, base)
        return _texture(rng, cfg, sy, sx, base, scale)

    def plane(d0: float, r: float) -> tuple[float, float]:
        slope = cfg.max_slant * d0 / max(r, 1.0)
        a = rng.uniform(0, 2 * np.pi)
        return slope * rng.uniform(0, 1) * np.cos(a), slope * rng.uniform(0, 1) * np.sin(a)

    # background: a far slanted plane (e.g. a wall or floor)
    d0 = rng.uniform(0.6 * far, far)
    gy, gx = plane(d0, diag / 2)
    depth = d0 + gy * (yy - hh / 2) + gx * (xx - ww / 2)
    base = rng.uniform(0.1, 0.9, 3)
    rgb = fractal(surface(yy, xx, base, diag), slice(None), slice(None))
    rgb *= (1 + cfg.shading * (depth - d0) / d0)[..., None]

    n = int(rng.integers(cfg.n_shapes[0], cfg.n_shapes[1] + 1))
    # depths of the shapes, far to near (painter's order: nearer shapes occlude farther ones)
    depths = np.sort(near + (far - near) * rng.random(n) ** 1.5)[::-1]
    rmin, rmax = cfg.radius[0] * diag, cfg.radius[1] * diag
    for d0 in depths:
        # power-law radius density ∝ r^-2 between rmin and rmax
        u = rng.random()
        r = 1.0 / (1.0 / rmin - u * (1.0 / rmin - 1.0 / rmax))
        cy, cx = rng.uniform(-0.1 * hh, 1.1 * hh), rng.uniform(-0.1 * ww, 1.1 * ww)
        y0, y1 = int(max(0, cy - r - 1)), int(min(hh, cy + r + 2))
        x0, x1 = int(max(0, cx - r - 1)), int(min(ww, cx + r + 2))
        if y0 >= y1 or x0 >= x1:
            continue
        sy, sx = yy[y0:y1, x0:x1], xx[y0:y1, x0:x1]
        if cfg.thin_prob > 0 and rng.random() < cfg.thin_prob:
            mask = _bar_mask(rng, sy, sx, cy, cx, r, rng.uniform(*cfg.thin_width) * ss / 2)
        else:
            mask = _shape_mask(rng, sy, sx, cy, cx, r)
        if not mask.any():
            continue
        base = rng.uniform(0.05, 0.95, 3)
        if cfg.camouflage_prob > 0 and rng.random() < cfg.camouflage_prob:
            under = rgb[y0:y1, x0:x1][mask].mean(axis=0)
            base = np.clip(under + rng.normal(0.0, cfg.camouflage_std, 3), 0.0, 1.0)
        col = fractal(surface(sy, sx, base, r * 4), slice(y0, y1), slice(x0, x1))
        if rng.random() < cfg.decal_prob:
            # a painted patch: colour edge on the underlying surface, no depth edge
            rgb[y0:y1, x0:x1][mask] = col[mask]
            continue
        gy, gx = plane(d0, r)
        pl = d0 + gy * (sy - cy) + gx * (sx - cx)
        col *= (1 + cfg.shading * (pl - d0) / d0)[..., None]
        depth[y0:y1, x0:x1][mask] = pl[mask]
        rgb[y0:y1, x0:x1][mask] = col[mask]

    # RGB: box-average the supersampling, blur, noise; depth: one sample per output pixel
    rgb = rgb.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
    if cfg.blur_sigma > 0:
        from scipy.ndimage import gaussian_filter

        rgb = gaussian_filter(rgb, sigma=(cfg.blur_sigma, cfg.blur_sigma, 0), mode="nearest")
    rgb = np.clip(rgb, 0.0, 1.0)
    var = cfg.read_noise**2 + cfg.shot_noise * rgb
    rgb = rgb + rng.standard_normal(rgb.shape) * np.sqrt(var)
    rgb8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    depth_out = np.clip(depth[ss // 2::ss, ss // 2::ss], near, far).astype(np.float32)
    return rgb8, np.ascontiguousarray(depth_out)


class SyntheticScenes(Dataset):
    """A deterministic dataset of :func:`dead_leaves_scene` samples.

    Item i of epoch e is rendered from ``default_rng([seed, i])`` (the scene is fixed per index);
    its crop/flip draws come from ``default_rng([seed, e, i, 1])`` (set :attr:`epoch`).

    Args:
        length: Number of scenes.
        size: ``(height, width)`` of each scene.
        factor: Upsampling factor (used by the default transform).
        transform: Sample assembly; None = ``'center'`` low resolution, no crop, random flip.
        seed: Base seed.
        config: Scene parameters.
        cache: Keep each rendered scene in memory (``length × H × W × 7`` bytes) so later
            epochs skip rendering; the samples are identical either way. Each DataLoader
            worker keeps its own cache, so use it with ``num_workers=0``.
    """

    def __init__(self, length: int, size: tuple[int, int] = (256, 256), factor: int = 8,
                 transform: Optional[AssembleJointUpsamplingInputs] = None, seed: int = 0,
                 config: Optional[SceneConfig] = None, cache: bool = False) -> None:
        if length < 1:
            raise ValueError(f"length must be ≥ 1, got {length}")
        self.length = length
        self.size = tuple(size)
        self.factor = factor
        self.transform = transform or AssembleJointUpsamplingInputs(
            factor, crop=None, flip=True, output_crop=0, lowres_mode="center")
        self.seed = seed
        self.config = config
        self.epoch = 0
        self._cache: Optional[dict[int, tuple[np.ndarray, np.ndarray]]] = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rgb uint8 [3, H, W], depth float32 [H, W])`` of scene ``i``."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        rgb, depth = dead_leaves_scene(*self.size, np.random.default_rng([self.seed, i]),
                                       self.config)
        scene = np.ascontiguousarray(rgb.transpose(2, 0, 1)), depth
        if self._cache is not None:
            self._cache[i] = scene
        return scene

    def __getitem__(self, i: int) -> JointSample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        rgb, depth = self.raw(i)
        return self.transform(rgb, depth, np.random.default_rng([self.seed, self.epoch, i, 1]))
