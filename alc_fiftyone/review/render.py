"""Server-side picture of a correction query (docs/method.md, step 5), as a PNG.

The picture shows the image around the query's region: the region (the superpixel, or its
expansion E(s)) outlined and tinted with the colour of the class it mostly holds, the rest
dimmed, a star deep inside the part of the region that holds that class (so it reads "this
region", never a minority object on its border), the bounding box of the object the star is
on (its connected region of that class) for context, and a legend of class colours. Dark
images are brightened first (a gamma on the context window), so the dimmed surroundings stay
legible. Images of any size are cropped to a context window first, so the cost does not grow
with the image; small images are enlarged (nearest neighbour) so that a 64x48 region still
reads well.

Class colours are Kelly's 22 colours of maximum contrast (K. L. Kelly, "Twenty-two colors of
maximum contrast", Color Engineering 3(6), 1965; the ISCC-NBS centroid values), without its
white and black (they vanish on bright and dark images), in Kelly's order, which keeps the
first classes furthest apart; beyond 20 classes a golden-angle hue walk continues. The review
panel gives the App's grid the same colours (``panels/review.py``).
"""

from __future__ import annotations

import base64
import colorsys
import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ..store.db import dataset_of
from ..store.fields import class_table, read_current_labels
from ..store.files import read_image
from .queries import attr, query_region

if TYPE_CHECKING:
    from fiftyone.core.collections import SampleCollection
    from fiftyone.core.labels import Detection
    from fiftyone.core.sample import Sample


DISPLAY_SIZE = 480  # longest side of the picture, pixels (a thin frame and the legend added)
CONTEXT = 1.5  # the window shows the object box / region with this much margin around it
DIM = 0.6  # brightness of the image outside the region (after the brightening of dark images)
TARGET_MEAN = 110.0  # a window darker than this (mean luminance, 0-255) is brightened to it
# Kelly (1965), colours 3-22 (1: white and 2: black left out)
KELLY = (
    "#f3c300",  # vivid yellow
    "#875692",  # strong purple
    "#f38400",  # vivid orange
    "#a1caf1",  # very light blue
    "#be0032",  # vivid red
    "#c2b280",  # grayish yellow
    "#848482",  # medium gray
    "#008856",  # vivid green
    "#e68fac",  # strong purplish pink
    "#0067a5",  # strong blue
    "#f99379",  # strong yellowish pink
    "#604e97",  # strong violet
    "#f6a600",  # vivid orange yellow
    "#b3446c",  # strong purplish red
    "#dcd300",  # vivid greenish yellow
    "#882d17",  # strong reddish brown
    "#8db600",  # vivid yellowish green
    "#654522",  # deep yellowish brown
    "#e25822",  # vivid reddish orange
    "#2b3d26",  # dark olive green
)


def class_colors(n: int) -> np.ndarray:
    """(n, 3) uint8 class colours: Kelly's colours of maximum contrast, then (beyond 20) a
    golden-angle hue walk."""
    out = np.zeros((max(n, 1), 3), dtype=np.uint8)
    for i in range(n):
        if i < len(KELLY):
            out[i] = [int(KELLY[i][k : k + 2], 16) for k in (1, 3, 5)]
            continue
        h = (i * 0.618033988749895) % 1.0
        s = 0.65 + 0.3 * ((i // 7) % 2)
        v = 0.95 - 0.25 * ((i // 14) % 2)
        out[i] = [int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)]
    return out


def color_of(value: int, num_classes: int, ignore) -> tuple[int, int, int]:
    if ignore is not None and value == ignore:
        return (224, 224, 192)
    if 0 <= value < num_classes:
        return tuple(int(c) for c in class_colors(num_classes)[value])
    return (128, 128, 128)


def hex_color(rgb) -> str:
    r, g, b = (int(c) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def object_box(labels: np.ndarray, rep_yx, limit: int = 4096) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the connected region of the class of pixel ``rep_yx`` that
    contains it, searched within ``limit`` pixels around it (so huge images stay cheap)."""
    H, W = labels.shape
    ry, rx = int(rep_yx[0]), int(rep_yx[1])
    y0, y1 = max(0, ry - limit // 2), min(H, ry + limit // 2)
    x0, x1 = max(0, rx - limit // 2), min(W, rx + limit // 2)
    win = labels[y0:y1, x0:x1] == labels[ry, rx]
    comp, _ = ndimage.label(win)
    sl = ndimage.find_objects((comp == comp[ry - y0, rx - x0]).astype(np.uint8))[0]
    return (x0 + sl[1].start, y0 + sl[0].start, x0 + sl[1].stop, y0 + sl[0].stop)


def _window(
    box, shape, margin: float = CONTEXT, aspect: float | None = None
) -> tuple[int, int, int, int]:
    """A window around ``box`` (x0, y0, x1, y1) grown by ``margin`` and at least 32 px; with
    ``aspect`` (width / height) grown further to that shape where the image allows, so the
    picture fills a fixed frame."""
    H, W = shape
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = max((x1 - x0) * margin / 2, 16)
    half_h = max((y1 - y0) * margin / 2, 16)
    if aspect:
        half_w, half_h = max(half_w, half_h * aspect), max(half_h, half_w / aspect)
        # slide rather than clip at the image's edges, so the shape holds where it fits
        cx = min(max(cx, half_w), W - half_w) if 2 * half_w <= W else W / 2
        cy = min(max(cy, half_h), H - half_h) if 2 * half_h <= H else H / 2
    wx0, wx1 = int(max(0, cx - half_w)), int(min(W, np.ceil(cx + half_w)))
    wy0, wy1 = int(max(0, cy - half_h)), int(min(H, np.ceil(cy + half_h)))
    return wx0, wy0, max(wx1, wx0 + 1), max(wy1, wy0 + 1)


def star_point(labels: np.ndarray, det) -> tuple[tuple[int, int], int]:
    """Where the picture of query ``det`` puts its star, as ((y, x), class value): the pixel
    deepest inside the part of the region that holds the class most of the region holds (the
    class the question names), so the star reads "this region" and never sits on a minority
    object at its border (the ranking's representative pixel can)."""
    slc, region = query_region(det, labels.shape)
    values = labels[slc][region]
    if not values.size:
        rep = attr(det, "rep_yx")
        return (int(rep[0]), int(rep[1])), int(labels[rep[0], rep[1]])
    counts = np.bincount(values.astype(np.int64).ravel())
    major = int(np.argmax(counts))
    part = region & (labels[slc] == major)
    depth = ndimage.distance_transform_edt(np.pad(part, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), part.shape)
    return (int(slc[0].start + y), int(slc[1].start + x)), major


def brighten(crop: np.ndarray, target: float = TARGET_MEAN) -> np.ndarray:
    """A dark window brightened by a gamma that brings its mean luminance to ``target``
    (highlights kept; at most x2.5 in gamma terms); a bright enough one unchanged."""
    lum = float((crop[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
    if lum >= target or lum <= 0:
        return crop
    gamma = float(np.clip(np.log(target / 255.0) / np.log(max(lum, 1.0) / 255.0), 0.4, 1.0))
    return 255.0 * (crop / 255.0) ** gamma


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rr = r if k % 2 == 0 else r * 0.45
        a = -np.pi / 2 + k * np.pi / 5
        pts.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
    return pts


def render_query_array(
    image: np.ndarray,
    labels: np.ndarray,
    det,
    names: dict[int, str],
    num_classes: int,
    ignore,
    display_size: int = DISPLAY_SIZE,
    whole_image: bool = False,
    aspect: float | None = None,
    legend: bool = True,
    dim: float = DIM,
) -> np.ndarray:
    """The query picture as an (h, w, 3) uint8 array (see the module docstring).

    ``whole_image``: the whole image instead of the region's surroundings; ``aspect`` (width /
    height): the surroundings grown to that shape (a fixed frame); ``legend=False``: no legend
    strip (the caller shows one); ``dim``: brightness of the image outside the region."""
    H, W = labels.shape
    slc, region = query_region(det, labels.shape)
    rep, value = star_point(labels, det)
    rx0, ry0, rw, rh = attr(det, "bbox_px")
    obj = object_box(labels, rep)
    # the window covers the region and the object (clipped to a sensible context)
    box = (min(rx0, obj[0]), min(ry0, obj[1]), max(rx0 + rw, obj[2]), max(ry0 + rh, obj[3]))
    wx0, wy0, wx1, wy1 = (0, 0, W, H) if whole_image else _window(box, (H, W), aspect=aspect)
    crop = brighten(image[wy0:wy1, wx0:wx1].astype(np.float32))
    inside = np.zeros((wy1 - wy0, wx1 - wx0), dtype=bool)
    ys0, xs0 = slc[0].start - wy0, slc[1].start - wx0
    inside[ys0 : ys0 + rh, xs0 : xs0 + rw] = region
    tint = np.array(color_of(value, num_classes, ignore), dtype=np.float32)
    out = crop * dim  # the rest dimmed
    out[inside] = crop[inside] * 0.7 + tint * 0.3
    # enlarge to the display size (nearest: pixels stay pixels)
    ch, cw = inside.shape
    scale = max(1.0, display_size / max(ch, cw))
    if max(ch, cw) * scale > display_size:
        scale = display_size / max(ch, cw)
    oh, ow = max(1, round(ch * scale)), max(1, round(cw * scale))
    pic = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).resize((ow, oh), Image.NEAREST)
    big_inside = (
        np.array(Image.fromarray(inside.astype(np.uint8) * 255).resize((ow, oh), Image.NEAREST))
        > 0
    )
    edge = big_inside & ~ndimage.binary_erosion(big_inside, iterations=2, border_value=0)
    halo = ndimage.binary_dilation(big_inside, iterations=1) & ~big_inside
    arr = np.array(pic)
    arr[halo] = (0, 0, 0)  # a dark line outside the yellow one: the outline reads on any image
    arr[edge] = (255, 255, 0)
    # a frame around the picture, so a star on the image's edge is drawn whole
    r = max(7.0, min(ow, oh) / 28)
    pad = int(r) + 4
    pic = Image.new("RGB", (ow + 2 * pad, oh + 2 * pad), (32, 32, 32))
    pic.paste(Image.fromarray(arr), (pad, pad))
    draw = ImageDraw.Draw(pic)
    sx, sy = ow / cw, oh / ch
    ox0, oy0, ox1, oy1 = obj
    draw.rectangle(
        [
            pad + (ox0 - wx0) * sx,
            pad + (oy0 - wy0) * sy,
            pad + (ox1 - wx0) * sx - 1,
            pad + (oy1 - wy0) * sy - 1,
        ],
        outline=(0, 200, 255),
        width=2,
    )
    cx, cy = pad + (rep[1] - wx0 + 0.5) * sx, pad + (rep[0] - wy0 + 0.5) * sy
    draw.polygon(_star(cx, cy, r + 2), fill=(0, 0, 0))
    draw.polygon(_star(cx, cy, r), fill=(255, 40, 40))
    if not legend:
        return np.array(pic)
    return np.array(_with_legend(pic, det, names, num_classes, ignore))


def _with_legend(pic: Image.Image, det, names, num_classes, ignore) -> Image.Image:
    """A strip under the picture: the current class and the suggestions, each with its colour."""
    by_name = {v: k for k, v in names.items()}
    entries = [str(det.label)] + [s for s in (attr(det, "suggestions") or []) if s != det.label]
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the small bitmap font
        font = ImageFont.load_default()
    row = 20
    strip = Image.new("RGB", (pic.width, row * 2 + 6), (32, 32, 32))
    d = ImageDraw.Draw(strip)
    x, y = 6, 4
    for i, name in enumerate(entries):
        value = by_name.get(name, -1)
        text = ("now: " if i == 0 else "") + name
        tw = int(d.textlength(text, font=font))
        if x + 18 + tw > pic.width - 4 and x > 6:
            x, y = 6, y + row
            if y > row + 4:
                break
        d.rectangle([x, y + 3, x + 13, y + 16], fill=color_of(value, num_classes, ignore))
        d.text((x + 18, y + 1), text, fill=(240, 240, 240), font=font)
        x += 18 + tw + 16
    out = Image.new("RGB", (pic.width, pic.height + strip.height))
    out.paste(pic, (0, 0))
    out.paste(strip, (0, pic.height))
    return out


def render_query(
    sample: Sample,
    det: Detection,
    dataset: SampleCollection = None,
    display_size: int = DISPLAY_SIZE,
    **options,
) -> bytes:
    """PNG bytes of the picture of query ``det`` on ``sample`` (current labels: the revised
    field where it exists).

    Parameters
    ----------
    sample
        The sample (``fo.Sample``).
    det
        The query (its Detection).
    dataset
        The sample's dataset (default: the sample's own).
    display_size
        Longest side of the picture, in pixels.
    **options
        ``whole_image`` (the whole image instead of the region's surroundings), ``aspect``
        (width / height: the surroundings grown to a frame of that shape), ``legend`` (False:
        no legend strip) and ``dim`` (brightness of the image outside the region).

    Returns
    -------
    bytes
        The PNG.
    """
    dataset = dataset if dataset is not None else dataset_of(sample)
    label_field = attr(det, "label_field")
    names, ignore, num_classes = class_table(dataset, label_field)
    labels = read_current_labels(sample, label_field, attr(det, "revised_field"))
    image = read_image(sample)
    if image.shape[:2] != labels.shape:  # never fail a picture on it: show the labels' frame
        image = np.array(Image.fromarray(image).resize(labels.shape[::-1], Image.BILINEAR))
    arr = render_query_array(
        image, labels, det, names, num_classes, ignore, display_size, **options
    )
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
