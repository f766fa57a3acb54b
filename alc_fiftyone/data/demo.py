"""make_demo_dataset: generated textured shapes with ground truth and noisy pseudo labels.

Each image shows 2-4 shapes (disc, square, triangle, ring, ...) with a per-class texture on a
textured background; the ground truth has a thin void border inside each object as VOC has,
and the pseudo labels are the ground truth corrupted by :func:`alc_fiftyone.core.noise.corrupt`.
The same seed gives the same data. Built like the importers: validated in memory, written
under a temporary name, given its name only when complete.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..progress import ProgressCallback, track
from ..store import files
from ..store.datasets import discard, new_dataset
from .importers import IGNORE_INDEX, add_and_publish, class_targets

DEMO_CLASSES: tuple[str, ...] = (
    "background",
    "disc",
    "square",
    "triangle",
    "ring",
    "diamond",
    "cross",
    "star",
    "hexagon",
)


def _demo_names(num_classes: int) -> list[str]:
    return [DEMO_CLASSES[i] if i < len(DEMO_CLASSES) else f"class_{i}" for i in range(num_classes)]


def _smooth_noise(
    rng: np.random.Generator, h: int, w: int, cell: int, channels: int = 1
) -> np.ndarray:
    """Low-frequency noise in [0, 1], (h, w, channels): a coarse random grid, bilinear."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    grid = rng.random((gh, gw, channels))
    ys = np.linspace(0, gh - 1.001, h)
    xs = np.linspace(0, gw - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _class_style(k: int) -> tuple[np.ndarray, int, float, float]:
    """Fixed colour, texture kind, angle and period of class k (the same in every image)."""
    rng = np.random.default_rng(10_007 * (k + 1))
    hue = (k * 0.381966) % 1.0  # golden-ratio hues: well separated colours
    h6 = hue * 6.0
    x = 1 - abs(h6 % 2 - 1)
    rgb = [(1, x, 0), (x, 1, 0), (0, 1, x), (0, x, 1), (x, 0, 1), (1, 0, x)][int(h6) % 6]
    colour = 60 + 170 * np.asarray(rgb, dtype=np.float64)
    kind = (k - 1) % 4
    angle = float(rng.uniform(0, np.pi))
    period = float(rng.uniform(5, 11))
    return colour, kind, angle, period


def _polygon_mask(h: int, w: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    from skimage.draw import polygon

    out = np.zeros((h, w), dtype=bool)
    rr, cc = polygon(ys, xs, shape=(h, w))
    out[rr, cc] = True
    return out


def _regular(cx, cy, r, n, rot, inner=None):
    """Vertices of a regular n-gon (or a star when ``inner`` is a radius ratio)."""
    if inner is None:
        t = rot + np.arange(n) * 2 * np.pi / n
        return cx + r * np.cos(t), cy + r * np.sin(t)
    t = rot + np.arange(2 * n) * np.pi / n
    radius = np.where(np.arange(2 * n) % 2 == 0, r, r * inner)
    return cx + radius * np.cos(t), cy + radius * np.sin(t)


def _shape_mask(
    k: int,
    h: int,
    w: int,
    yy: np.ndarray,
    xx: np.ndarray,
    cx: float,
    cy: float,
    r: float,
    rot: float,
    aspect: float,
) -> np.ndarray:
    shape = (k - 1) % (len(DEMO_CLASSES) - 1) + 1
    cos, sin = np.cos(rot), np.sin(rot)
    u = (xx - cx) * cos + (yy - cy) * sin
    v = -(xx - cx) * sin + (yy - cy) * cos
    if shape == 1:  # disc (an ellipse)
        return (u / r) ** 2 + (v / (r * aspect)) ** 2 <= 1.0
    if shape == 2:  # square (a rotated rectangle)
        return (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85 * aspect)
    if shape == 3:
        return _polygon_mask(h, w, *_regular(cx, cy, r * 1.1, 3, rot))
    if shape == 4:  # ring
        d = (u / r) ** 2 + (v / (r * aspect)) ** 2
        return (d <= 1.0) & (d >= 0.35)
    if shape == 5:  # diamond
        return np.abs(u) / r + np.abs(v) / (r * aspect) <= 1.0
    if shape == 6:  # cross
        arm = r * 0.33
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    if shape == 7:
        return _polygon_mask(h, w, *_regular(cx, cy, r * 1.15, 5, rot, inner=0.45))
    return _polygon_mask(h, w, *_regular(cx, cy, r, 6, rot))


def _texture(k: int, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """(h, w, 3) float fill of class k: its colour modulated by its texture kind."""
    colour, kind, angle, period = _class_style(k)
    h, w = yy.shape
    t = xx * np.cos(angle) + yy * np.sin(angle)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == 0:  # stripes
        mod = 0.5 + 0.5 * np.sin(2 * np.pi * t / period + phase)
    elif kind == 1:  # fine noise
        mod = rng.random((h, w))
    elif kind == 2:  # gradient
        mod = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    else:  # checker
        mod = ((np.floor(xx / (period * 0.7)) + np.floor(yy / (period * 0.7))) % 2).astype(float)
    return colour[None, None, :] * (0.65 + 0.5 * mod[..., None])


def _demo_sample(
    i: int, seed: int, w: int, h: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """One generated (image (h, w, 3) uint8, ground truth (h, w) uint8) pair."""
    rng = np.random.default_rng([seed, i])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # background: smooth colour blotches over a faint diagonal grain
    base = _smooth_noise(rng, h, w, cell=max(8, min(h, w) // 4), channels=3)
    grain = 0.5 + 0.5 * np.sin((xx + yy) * rng.uniform(0.6, 1.2))
    image = 70 + 90 * base + 20 * grain[..., None]
    labels = np.zeros((h, w), dtype=np.uint8)
    n_objects = int(rng.integers(2, 5))
    scale = min(h, w)
    objects = []
    for _ in range(n_objects):
        k = int(rng.integers(1, num_classes))
        r = float(rng.uniform(0.12, 0.28) * scale)
        cx = float(rng.uniform(r * 0.6, w - r * 0.6))
        cy = float(rng.uniform(r * 0.6, h - r * 0.6))
        objects.append((r, k, cx, cy, float(rng.uniform(0, np.pi)), float(rng.uniform(0.7, 1))))
    # largest first, so smaller objects stay visible where they overlap
    for r, k, cx, cy, rot, aspect in sorted(objects, key=lambda o: -o[0]):
        inside = _shape_mask(k, h, w, yy, xx, cx, cy, r, rot, aspect)
        if not inside.any():
            continue
        fill = _texture(k, rng, yy, xx)
        image[inside] = fill[inside]
        labels[inside] = k
    image += rng.normal(0, 6, size=image.shape)
    # a thin void border inside every object outline, as in VOC
    edge = np.zeros((h, w), dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    gt = labels.copy()
    gt[edge & (labels > 0)] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), gt


def make_demo_dataset(
    name: str | None = None,
    num_samples: int = 24,
    size: tuple[int, int] = (160, 120),
    num_classes: int = 5,
    noise_rate: float = 0.25,
    seed: int = 0,
    label_field: str = "ground_truth",
    pseudo_field: str = "pseudo",
    persistent: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
):
    """A generated dataset of textured shapes with ground truth and noisy pseudo labels.

    Each image (``size`` = width, height) shows 2-4 shapes (disc, square, triangle, ring, ...;
    class 0 is background) with a per-class texture on a textured background. ``label_field``
    holds the ground truth (255 on a one-pixel border inside each object, like VOC's void),
    ``pseudo_field`` the same masks corrupted by :func:`alc_fiftyone.core.noise.corrupt` at
    ``noise_rate`` (seed ``seed + i`` for sample i). The same seed gives the same data.
    ``info["alc"]`` names ``pseudo_field`` as the label field under review and ``label_field``
    as ``gt_field``.

    Parameters
    ----------
    name
        The dataset's name.
    num_samples
        Number of images.
    size
        Image size (width, height).
    num_classes
        Number of classes (class 0 is background).
    noise_rate
        Share of the pixels the pseudo labels get wrong.
    seed
        Seed of everything random in the step.
    label_field
        The field of the ground truth.
    pseudo_field
        The field of the noisy pseudo labels.
    persistent
        Whether the dataset outlives the session.
    overwrite
        Replace a dataset of that name (only once the new one is complete).
    progress
        ``progress(done, total, description)``, e.g. the CLI's tqdm bars.

    Returns
    -------
    fiftyone.core.dataset.Dataset
        The new dataset.
    """
    from ..core.noise import corrupt

    width, height = (int(v) for v in size)
    if width < 16 or height < 16:
        raise ValueError(f"size must be at least 16x16, got {width}x{height}")
    if not 2 <= num_classes <= IGNORE_INDEX:
        raise ValueError(f"num_classes must lie in 2..255, got {num_classes}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if label_field == pseudo_field:
        raise ValueError("label_field and pseudo_field must differ")

    import fiftyone as fo

    names = _demo_names(num_classes)
    name = name or "alc-demo"
    dataset = new_dataset(name, persistent, overwrite)
    try:
        image_dir = files.dataset_dir(dataset) / "images"
        image_dir.mkdir(parents=True, exist_ok=True)
        samples = []
        for i in track(range(num_samples), num_samples, progress, "Generating demo samples"):
            image, gt = _demo_sample(i, seed, width, height, num_classes)
            pseudo = corrupt(
                gt, num_classes, rate=noise_rate, seed=seed + i, ignore_index=IGNORE_INDEX
            )
            key = f"{i:04d}"
            image_path = image_dir / f"{key}.png"
            Image.fromarray(image).save(image_path, format="PNG")
            samples.append(
                fo.Sample(
                    filepath=str(image_path),
                    metadata=fo.ImageMetadata(
                        size_bytes=image_path.stat().st_size,
                        mime_type="image/png",
                        width=width,
                        height=height,
                        num_channels=3,
                    ),
                    **{
                        label_field: fo.Segmentation(
                            mask_path=files.write_mask(gt, dataset, label_field, key)
                        ),
                        pseudo_field: fo.Segmentation(
                            mask_path=files.write_mask(
                                np.asarray(pseudo, dtype=np.uint8), dataset, pseudo_field, key
                            )
                        ),
                    },
                )
            )
        targets = {
            label_field: class_targets(names, with_ignore=True),
            pseudo_field: class_targets(names, with_ignore=True),
        }
        info = {
            "ignore_index": IGNORE_INDEX,
            "classes": names,
            "label_field": pseudo_field,
            "gt_field": label_field,
            "source": {
                "kind": "demo",
                "seed": int(seed),
                "num_samples": int(num_samples),
                "size": [width, height],
                "noise_rate": float(noise_rate),
            },
        }
        add_and_publish(dataset, samples, targets, info, progress)
    except BaseException:
        discard(dataset)
        raise
    return dataset
