"""The per-image work of :func:`alc_fiftyone.compute_superpixels`, as pure functions of files
and parameters, so that it runs in worker processes (:mod:`alc_fiftyone.core.pool`, through
:class:`alc_fiftyone.store.masks.MaskJob`): this module imports neither FiftyOne nor the
database. What a task needs from a sample (its image path, the mask file or the inline mask
of a field) is taken in the calling process by :func:`mask_source`; a task returns the id map
and the attributes stored with it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..core import superpixels as csp
from ..errors import SampleError
from ..store.files import check_same_size, read_image, read_png_array


def mask_source(sample, field: str):
    """What a worker reads for ``sample[field]``: its mask file path, or a copy of an inline
    mask; SampleError when the field is empty."""
    seg = sample[field] if sample.has_field(field) else None
    if seg is None:
        raise SampleError(sample.id, f"field {field!r} is empty", sample.filepath)
    if getattr(seg, "mask_path", None):
        return str(seg.mask_path)
    if getattr(seg, "mask", None) is not None:
        arr = np.array(seg.mask)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise SampleError(sample.id, f"{field!r} mask has shape {arr.shape}, expected 2-D")
        return arr
    raise SampleError(sample.id, f"{field!r} has neither a mask nor a mask_path", sample.filepath)


def read_source(source, sample_id: str) -> np.ndarray:
    """The array of a :func:`mask_source` (read from its file, or the inline copy)."""
    if isinstance(source, np.ndarray):
        return source.copy()
    return read_png_array(source, sample_id)


def image_superpixels(sample_id: str, image_path: str, method: str, params: dict):
    """SLIC or Felzenszwalb superpixels of one image: ``(ids, attributes)``."""
    ids = csp.superpixels(read_image(image_path, sample_id), method=method, **params)
    return ids, {"num_superpixels": int(ids.max()), "method": method}


#: label-aware Felzenszwalb base regions are computed on the image shrunk by the whole factor
#: that brings it nearest this many pixels (none below about 70,000): CamVid frames and
#: PASCAL images by 2, the base then grown back; 5x faster, and the regions still follow the
#: labels at full resolution (BENCHMARKS.md, "Round speed")
FELZENSZWALB_WORK_PIXELS = 50_000
#: the Felzenszwalb scale on the shrunk image is ``scale * FELZENSZWALB_WORK_SCALE / factor``:
#: measured at factor 2 on 100 CamVid frames (label-aware regions per image 47.6 against 47.9
#: at full resolution; data mIoU after 5 rounds of sim at 348 clicks 79.57 against 79.83,
#: where 1.0 gave 50.9 regions and 79.31, and 1.5 gave 46.2 and 79.31)
FELZENSZWALB_WORK_SCALE = 1.3
#: the same for the finer Felzenszwalb of a nested level (scale 200, min_size 32 at full
#: resolution): measured on 20 CamVid frames, 344 nested regions per frame against 334 at full
#: resolution (1.3 gave 275), 0.09 s a frame for the level instead of 0.23
NESTED_WORK_SCALE = 0.9


def work_factor(shape, work_pixels: int | None = FELZENSZWALB_WORK_PIXELS) -> int:
    """The whole factor an image of ``shape`` is shrunk by for its base regions."""
    if not work_pixels:
        return 1
    return max(1, round(float(np.sqrt(shape[0] * shape[1] / float(work_pixels)))))


def shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (H, W[, 3] uint8) averaged over ``factor`` x ``factor`` blocks (the last
    partial row and column of blocks dropped), rounded to uint8."""
    h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    x = image[:h, :w].astype(np.float32)
    x = x.reshape(h // factor, factor, w // factor, factor, *image.shape[2:]).mean(axis=(1, 3))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def grow(ids: np.ndarray, factor: int, shape) -> np.ndarray:
    """``ids`` repeated to ``factor`` x ``factor`` blocks, the cut-off border filled from the
    nearest block, to ``shape``."""
    big = np.repeat(np.repeat(ids, factor, axis=0), factor, axis=1)
    pad = ((0, shape[0] - big.shape[0]), (0, shape[1] - big.shape[1]))
    return np.pad(big, pad, mode="edge") if pad[0][1] or pad[1][1] else big


def base_regions(image: np.ndarray, base: str, params: dict) -> np.ndarray:
    """The base regions label-aware superpixels cut the label components with.

    Felzenszwalb (``scale``, ``min_size`` and ``sigma`` meant at full resolution) runs on the
    image shrunk by :func:`work_factor` (``work_pixels``, default
    :data:`FELZENSZWALB_WORK_PIXELS`; 0 or None: full resolution), with ``scale`` times
    :data:`FELZENSZWALB_WORK_SCALE` (or ``work_scale``) divided by the factor (the measured
    equivalent: as many regions on CamVid) and ``min_size`` divided by its square, and the
    regions are grown back to the image's size.
    """
    from ..core.regions import FELZENSZWALB_MIN_SIZE, FELZENSZWALB_SCALE_PER_PIXEL

    if base != "felzenszwalb":
        return csp.superpixels(image, method=base, **params)
    p = dict(params)
    f = work_factor(image.shape, p.pop("work_pixels", FELZENSZWALB_WORK_PIXELS))
    work_scale = float(p.pop("work_scale", FELZENSZWALB_WORK_SCALE))
    # the scale grows with the image, so that a region covers a similar share of any image
    # (FELZENSZWALB_SCALE_PER_PIXEL, by measurement)
    p = {"min_size": FELZENSZWALB_MIN_SIZE, **p}
    p.setdefault("scale", FELZENSZWALB_SCALE_PER_PIXEL * image.shape[0] * image.shape[1])
    if f == 1:
        return csp.superpixels(image, method=base, **p)
    p["scale"] = float(p["scale"]) * work_scale / f
    p["min_size"] = max(1, round(int(p["min_size"]) / f**2))
    small = csp.superpixels(shrink(image, f), method=base, **p)
    return grow(small, f, image.shape[:2])


def label_aware(
    sample_id: str,
    image_path: str,
    labels,
    base: str,
    base_source,
    params: dict,
    options: dict,
    attributes: dict,
):
    """Label-aware regions of one image (:func:`alc_fiftyone.core.regions.label_aware_regions`)
    on base regions computed from the image (``base`` "felzenszwalb" or "slic" with
    ``params``) or read (``base_source``, a :func:`mask_source`); ``labels`` is the
    :func:`mask_source` of the current labels, ``options`` the keywords ``min_area``,
    ``ignore_index`` and ``ignore``. Returns ``(ids, attributes)``."""
    from ..core.regions import label_aware_regions

    ref = SimpleNamespace(id=sample_id, filepath=image_path)
    image = read_image(image_path, sample_id)
    current = read_source(labels, sample_id)
    check_same_size(ref, "the labels", current.shape, "the image", image.shape)
    if base_source is not None:
        base_ids = read_source(base_source, sample_id)
    else:
        base_ids = base_regions(image, base, params)
    check_same_size(ref, "the base regions", base_ids.shape, "the labels", current.shape)
    ids = label_aware_regions(current, base_ids, image=image, **options)
    return ids, {**attributes, "num_superpixels": int(ids.max())}


def nested_level(
    sample_id: str, image_path: str, parent, base: str, params: dict, min_area: int, attrs: dict
):
    """A finer level of a region hierarchy for one image: the regions of ``parent`` (a
    :func:`mask_source` of the level above) cut by ``base`` regions of the image
    (:func:`alc_fiftyone.core.regions.nested_regions`). ``params`` are the base method's;
    ``scale_per_pixel`` (Felzenszwalb) or ``area`` (SLIC, pixels per segment) size it to the
    image. Returns ``(ids, attributes)``."""
    from ..core.regions import nested_regions

    ref = SimpleNamespace(id=sample_id, filepath=image_path)
    image = read_image(image_path, sample_id)
    above = read_source(parent, sample_id)
    check_same_size(ref, "the image", image.shape, "the level above", above.shape)
    p = dict(params)
    hw = image.shape[0] * image.shape[1]
    scale_pp, area = p.pop("scale_per_pixel", None), p.pop("area", None)
    if base == "felzenszwalb":
        p.setdefault("min_size", max(min_area, 20))
        p.setdefault("scale", float(scale_pp) * hw if scale_pp else 200.0)
        # on the shrunk image, as the top level's base (the scale and min_size meant at full
        # resolution): 0.04 s a CamVid frame instead of 0.21
        cut = base_regions(image, base, {"work_scale": NESTED_WORK_SCALE, **p})
    else:
        p.setdefault("n_segments", max(1, round(hw / float(area or 330))))
        cut = csp.superpixels(image, method=base, **p)
    ids = nested_regions(above, cut, image=image, min_area=min_area)
    return ids, {**attrs, "num_superpixels": int(ids.max())}
