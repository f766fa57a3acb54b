"""The generated datasets of the scale benchmarks (``scale.py``, ``scale_workers.py``): a
small pool from ``alc.make_demo_dataset``, then transformed copies of it with fresh image
noise, written fast (PNG compression level 1, samples added in batches)."""

from __future__ import annotations

from pathlib import Path

GEN_BATCH = 1000  # samples generated and added at once


def _write_png(array, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def generate(name: str, n: int, size: tuple[int, int], pool: int, seed: int = 0) -> None:
    """A dataset of ``n`` samples: ``make_demo_dataset`` for the first ``min(n, pool)``,
    transformed copies of them (with fresh image noise) for the rest."""
    import fiftyone as fo
    import numpy as np

    import alc_fiftyone as alc
    from alc_fiftyone.store import files as storage

    k = min(n, pool)
    ds = alc.make_demo_dataset(name=name, num_samples=k, size=size, seed=seed, persistent=True)
    if n == k:
        return
    info = ds.info["alc"]
    gt_field, label_field = info["gt_field"], info["label_field"]
    base = []
    for s in ds.iter_samples():
        base.append(
            (
                storage.read_image(s),
                storage.read_segmentation(s, gt_field),
                storage.read_segmentation(s, label_field),
            )
        )
    root = storage.dataset_dir(ds)
    folders = {f: root / f"gen-{f}" for f in ("images", gt_field, label_field)}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng(seed + 1)
    for start in range(k, n, GEN_BATCH):
        samples = []
        for i in range(start, min(start + GEN_BATCH, n)):
            image, gt, pseudo = base[i % k]
            flip = (i // k) % 4
            dy, dx = int(rng.integers(0, height)), int(rng.integers(0, width))
            arrays = []
            for a in (image, gt, pseudo):
                if flip & 1:
                    a = a[:, ::-1]
                if flip & 2:
                    a = a[::-1]
                arrays.append(np.roll(a, (dy, dx), axis=(0, 1)))
            noise = rng.normal(0, 6, size=arrays[0].shape)
            arrays[0] = np.clip(arrays[0] + noise, 0, 255).astype(np.uint8)
            key = f"{i:06d}"
            paths = {}
            for f, a in zip(folders, arrays):
                paths[f] = folders[f] / f"{key}.png"
                _write_png(np.ascontiguousarray(a), paths[f])
            samples.append(
                fo.Sample(
                    filepath=str(paths["images"]),
                    metadata=fo.ImageMetadata(
                        size_bytes=paths["images"].stat().st_size,
                        mime_type="image/png",
                        width=width,
                        height=height,
                        num_channels=3,
                    ),
                    **{
                        gt_field: fo.Segmentation(mask_path=str(paths[gt_field])),
                        label_field: fo.Segmentation(mask_path=str(paths[label_field])),
                    },
                )
            )
        ds.add_samples(samples, progress=False)
