"""Issue 20, points 2 to 7 in the real App: what a new user tripped over.

A small road-scene stand-in (CamVid's 11 classes, dark frames, object noise in ``noisy``,
label-aware regions on it, ranked), opened the first time in the App. Each test drives the App
as a person would and checks what the screen shows and what the database holds.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from app_browser import (  # noqa: F401 (fixtures)
    QUESTION,
    artifacts,
    browser,
    input_after,
    launch_app,
    open_review,
    operator_error,
    panel_text,
    queries,
    rank_of,
    set_name,
    settle,
    shot,
    shown,
    status_text,
    wait_for,
)
from PIL import Image

from alc_fiftyone.review.answers import ANSWERED, attr

pytestmark = pytest.mark.browser

CAMVID = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]
W, H = 240, 160
DARK = 28  # the frames' brightness (0-255): an evening road scene
BLOCKS = [8, 9, 4, 5, 10, 2]  # the class of each frame's central block (Car first)
BLOCK = (slice(70, 130), slice(80, 160))  # rows, columns of the central block


def frame(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask of frame ``k``: sky, a building, road, and a central block of class
    ``BLOCKS[k]`` on the road; the image is dark and flat under the block."""
    rng = np.random.default_rng(k)
    mask = np.full((H, W), 3, np.uint8)  # road
    mask[:50] = 0  # sky
    mask[10:70, 10:70] = 1  # a building
    mask[BLOCK] = BLOCKS[k]
    image = np.full((H, W, 3), DARK, np.uint8)
    image[:50] = DARK + 14
    image[10:70, 10:70] = DARK + 40  # lighter: the context has something to read
    noise = rng.integers(-6, 7, size=(H, W, 1))
    image = np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)
    image[BLOCK] = DARK  # flat: the grid's colour over it is the class colour on a gray
    return image, mask


@pytest.fixture
def road(unique_name, tmp_path, monkeypatch):
    """6 dark road frames with CamVid's classes, ``noisy`` = object noise on the ground
    truth, label-aware regions on ``noisy``, 12 queries; no App settings yet."""
    import alc_fiftyone as alc

    monkeypatch.setenv("ALC_FIFTYONE_DIR", str(tmp_path / "alc"))
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for k in range(len(BLOCKS)):
        image, mask = frame(k)
        Image.fromarray(image).save(images / f"f{k}.png")
        Image.fromarray(mask).save(masks / f"f{k}.png")
    ds = alc.load_image_masks(images, masks, classes=CAMVID, name=unique_name, persistent=True)
    alc.corrupt_labels(ds, "ground_truth", "noisy", rate=0.3, seed=0)
    alc.compute_superpixels(ds, label_field="noisy")
    alc.rank_superpixels(ds, "noisy", budget=12)
    assert ds.app_config.active_fields is None and ds.app_config.color_scheme is None
    yield ds
    ds.delete()


def card_picture(page) -> np.ndarray:
    """The picture the card shows, as an RGB array (decoded from its data URI)."""
    src = page.locator("img[src^='data:image/png']").first.get_attribute("src")
    data = base64.b64decode(src.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def dialog_text(page) -> str:
    box = page.locator("[role='dialog']")
    return box.first.inner_text() if box.count() else ""


def execute(page) -> None:
    page.get_by_role("button", name=re.compile(r"^Execute")).click()


def drawn(page, field: str) -> bool:
    """Whether the grid draws ``field`` (its sidebar checkbox is ticked)."""
    icon = page.locator(f"[data-cy='checkbox-{field}'] svg").first
    icon.wait_for(timeout=30_000)
    return icon.get_attribute("data-testid") == "CheckBoxIcon"


def operator_browser(page, text: str) -> list[str]:
    """Open the App's operator browser, type ``text``; the choices it lists, in order."""
    page.keyboard.press("`")
    box = page.get_by_placeholder(re.compile("operator", re.IGNORECASE))
    if box.count():
        box.first.wait_for(timeout=10_000)
    page.wait_for_timeout(500)
    page.keyboard.type(text, delay=30)
    page.wait_for_timeout(1200)
    found = [t.strip() for t in page.get_by_text(re.compile(r"^ALC: ")).all_inner_texts()]
    return [t for t in found if t != "ALC: Review"]  # the panel's own tab


# --- 2. an operator's result says done, or why not ------------------------------------------


def test_save_from_the_panel_says_done_or_why_not(road, launch_app, artifacts, browser):
    import fiftyone as fo

    page = browser.page()
    open_review(page, launch_app(road))
    settle(page)
    page.keyboard.press("Enter")
    wait_for(lambda: any(attr(d, "status") in ANSWERED for d in queries(road).values()), page)
    settle(page)
    name = f"{road.name}-v2"

    def save():
        page.get_by_role("button", name=re.compile("Save revised version")).click()
        box = input_after(page, "New dataset name")
        box.wait_for(timeout=30_000)
        box.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(name, delay=10)
        settle(page, 800)
        execute(page)

    save()
    wait_for(lambda: fo.dataset_exists(name) and "Saved the" in dialog_text(page), page, 120)
    settle(page, 1000)
    shot(page, artifacts, "1-saved")
    text = dialog_text(page)
    try:
        assert "Not done" not in text, f"a success shows 'Not done': {text!r}"
        assert f"Saved the revised version as dataset {name}" in " ".join(text.split())
        page.keyboard.press("Escape")
        settle(page)
        # a real failure: the name is taken
        save()
        wait_for(lambda: "already exists" in dialog_text(page), page, 120)
        settle(page, 1000)
        shot(page, artifacts, "2-refused")
        text = " ".join(dialog_text(page).split())
        assert re.search(rf"Not done: a dataset named '{re.escape(name)}' already exists", text), (
            f"the failure does not say why: {text!r}"
        )
        assert not re.search(r"\bDone\b", text.replace("Not done", "")), text
        page.keyboard.press("Escape")
        wait_for(lambda: "Not done: a dataset named" in status_text(page), page)
        shot(page, artifacts, "3-panel-line")
    finally:
        fo.delete_dataset(name)


# --- 3. operators act on the images behind the queue in the grid ----------------------------


def test_operators_act_on_the_images_behind_the_queue(
    road, launch_app, artifacts, browser, tmp_path
):
    page = browser.page()
    open_review(page, launch_app(road))
    settle(page)
    page.keyboard.press("Enter")  # an answer: the dataset has an 'alc_revised' field
    wait_for(lambda: road.reload() or road.has_field("alc_revised"), page)
    settle(page)
    page.get_by_role("button", name=re.compile("Queue in grid")).click()
    page.get_by_text(re.compile(r"\d+ patches")).first.wait_for(timeout=30_000)
    settle(page)
    n = len(road)
    patches = sum(len(d or []) for d in road.values("alc_queries.detections"))
    page.get_by_role("button", name=re.compile("Export masks")).click()
    out_box = input_after(page, "Output folder")
    out_box.wait_for(timeout=30_000)
    settle(page, 800)
    shot(page, artifacts, "1-export-form")
    notice = page.get_by_text("Export the masks of", exact=False).first.inner_text()
    assert f"of {n} image(s)" in notice and f"behind the {patches} patches" in notice, (
        f"{notice!r} for {n} images"
    )
    out_box.click()
    out = tmp_path / "export"
    page.keyboard.type(str(out), delay=5)
    settle(page, 800)
    execute(page)
    wait_for(lambda: len(list(out.glob("*.png"))) == n or operator_error(page), page, 120)
    settle(page, 1500)
    shot(page, artifacts, "2-exported")
    assert not operator_error(page), f"the export failed: {operator_error(page)}"
    assert "Not done" not in dialog_text(page), dialog_text(page)
    assert len(list(out.glob("*.png"))) == n
    page.keyboard.press("Escape")
    settle(page)
    # the other forms count images too
    for label, action in (
        ("Compute superpixels", "Compute superpixels for"),
        ("Simulate correction", "Simulate on"),
        ("Compute SAM superpixels", "Compute SAM superpixels for"),
    ):
        operator_browser(page, label)
        page.keyboard.press("Enter")
        page.get_by_text(action, exact=False).first.wait_for(timeout=30_000)
        notice = page.get_by_text(action, exact=False).first.inner_text()
        shot(page, artifacts, f"3-{label.split()[0].lower()}-form")
        assert f"{action} {n} image(s)" in notice, f"{notice!r} for {n} images"
        page.keyboard.press("Escape")
        settle(page, 500)


# --- 4. Mixed shows the first piece ----------------------------------------------------------


def test_mixed_shows_its_first_piece_then_the_others(road, launch_app, artifacts, browser):
    page = browser.page()
    open_review(page, launch_app(road))
    settle(page)
    first = shown(page)
    parent = next(d for d in queries(road).values() if d["rank"] == first["rank"])
    page.keyboard.press("m")
    wait_for(lambda: "Split rank" in status_text(page), page)
    settle(page)
    shot(page, artifacts, "1-mixed")
    pieces = list(queries(road)[parent.id].split_into)
    assert len(pieces) >= 2
    now = shown(page)
    held = [d for d in queries(road).values() if attr(d, "status") == "claimed"]
    on_screen = [d for d in held if d["rank"] == now["rank"]]
    assert now["rank"] == first["rank"] and on_screen and on_screen[0].id in pieces, (
        f"'{status_text(page)}' over rank {now['rank']} ({now['label']}), not a piece of rank "
        f"{first['rank']}"
    )
    # the other pieces come next, before any other query
    for i in range(len(pieces) - 1):
        page.keyboard.press("Enter")
        wait_for(lambda: status_text(page).startswith("Saved"), page)
        settle(page)
        nxt = shown(page)
        assert nxt["rank"] == first["rank"], f"after piece {i + 1}: rank {nxt['rank']}"
    shot(page, artifacts, "2-last-piece")
    mine = {d.id for d in queries(road).values() if attr(d, "status") == "claimed"}
    assert mine <= set(pieces)


# --- 5. the longest name accepted, and the card at 1280x720 ----------------------------------


def in_view(box, width: int, height: int) -> bool:
    return (
        bool(box)
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= width + 0.5
        and box["y"] + box["height"] <= height + 0.5
    )


def check_card_fits(page, step: str, artifacts) -> list[str]:
    """What of the card is not in the 1280x720 window, or not on one line (a list)."""
    shot(page, artifacts, step)
    items = {
        "question": page.get_by_text(QUESTION, exact=False).first,
        "picture": page.locator("img[src^='data:image/png']").first,
    }
    for name in (
        "Yes, it is",
        "Mixed",
        "Skip",
        "Undo",
        "Skipped",
        "Open sample",
        "Queue in grid",
        "Rank again",
        "Save revised version",
        "Export masks",
    ):
        items[name] = page.get_by_role("button", name=re.compile(rf"^\s*{name}")).first
    boxes = {k: v.bounding_box() for k, v in items.items()}
    off = {k: b for k, b in boxes.items() if not in_view(b, 1280, 720)}
    problems = [f"{step}: out of view at 1280x720: {sorted(off)}"] if off else []
    tall = {
        k: b["height"]
        for k, b in boxes.items()
        if k not in ("question", "picture") and b["height"] > 40
    }
    if tall:
        problems.append(f"{step}: buttons on two lines: {tall}")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    if width > 1280:
        problems.append(f"{step}: the page is {width} px wide")
    return problems


def test_a_long_name_is_refused_and_the_card_fits_1280x720(road, launch_app, artifacts, browser):
    page = browser.page(1280, 720)
    open_review(page, launch_app(road))
    settle(page)
    problems = check_card_fits(page, "1-opened", artifacts)
    before = {d.claimed_by for d in queries(road).values() if attr(d, "status") == "claimed"}
    box = input_after(page, "Reviewer")
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text("x" * 600)
    page.keyboard.press("Enter")
    page.wait_for_timeout(2000)
    settle(page)
    shot(page, artifacts, "2-long-name")
    names = {d.claimed_by for d in queries(road).values() if attr(d, "status") == "claimed"}
    if names != before:
        problems.append(f"a 600-character name was taken: claims under {len(max(names))} chars")
    if "at most 64 characters; this one has 600" not in status_text(page):
        problems.append(f"no limit said: {status_text(page)[:120]!r}")
    if input_after(page, "Reviewer").input_value() not in before:
        problems.append("the name field keeps the refused name")
    problems += check_card_fits(page, "3-after-the-long-name", artifacts)
    longest = "ana.maria.rodriguez-de-la-fuente@roads.example.org-team-north-42"
    assert len(longest) == 64
    set_name(page, longest, delay=0)
    wait_for(lambda: f"Reviewing as {longest}" in status_text(page), page)
    settle(page)
    claims = {d.claimed_by for d in queries(road).values() if attr(d, "status") == "claimed"}
    if claims != {longest}:
        problems.append(f"the longest name is not the tab's: {claims}")
    problems += check_card_fits(page, "4-longest-name", artifacts)
    lines = page.get_by_text(re.compile(r"^(Round \d+|Total:)")).all()
    if not all(ln.bounding_box()["height"] <= 20 for ln in lines):
        problems.append("progress lines wrap")
    page.keyboard.press("Enter")
    wait_for(lambda: status_text(page).startswith("Saved"), page)
    settle(page)
    problems += check_card_fits(page, "5-answered", artifacts)
    assert not problems, "\n".join(problems)


# --- 6. the first visit: grid, colours, context, star ----------------------------------------


def delta_e(rgb1, rgb2) -> float:
    from skimage.color import deltaE_ciede2000, rgb2lab

    lab = rgb2lab(np.array([[rgb1, rgb2]], dtype=float) / 255.0)[0]
    return float(deltaE_ciede2000(lab[0], lab[1]))


def hex_rgb(h: str) -> tuple[int, int, int]:
    return tuple(int(h[i : i + 2], 16) for i in (1, 3, 5))


@pytest.fixture
def star_on_a_border_object(road):
    """The issue's car roof: the best query's representative pixel moved to the region's
    border, and a small object of another class (5% of the region) put around it."""
    import fiftyone as fo
    from bson import ObjectId
    from scipy import ndimage

    import alc_fiftyone as alc
    from alc_fiftyone.review.answers import query_region
    from alc_fiftyone.review.queue import get_query
    from alc_fiftyone.store.files import read_segmentation, write_mask

    q = alc.next_query(road, "setup")
    alc.release(road, q["id"], "setup")
    sample, det = get_query(road, q["id"])
    labels = read_segmentation(sample, "noisy")
    slc, region = query_region(det, labels.shape)
    border = region & ~ndimage.binary_erosion(region, iterations=1, border_value=0)
    ys, xs = np.nonzero(border)
    k = int(np.argmin(ys * 1000 + xs))  # the top-left-most border pixel
    y, x = int(ys[k] + slc[0].start), int(xs[k] + slc[1].start)
    major = int(np.bincount(labels[slc][region].ravel()).argmax())
    other = 8 if major != 8 else 3  # a car (or road) on the border
    yy, xx = np.ogrid[: labels.shape[0], : labels.shape[1]]
    window = np.zeros(labels.shape, bool)
    window[slc] = region
    radius = max(2.0, np.sqrt(0.05 * region.sum() / np.pi))
    blob = window & ((yy - y) ** 2 + (xx - x) ** 2 <= radius**2)
    labels[blob] = other
    sample["noisy"] = fo.Segmentation(mask_path=write_mask(labels, road, "noisy", sample.id))
    sample.save()
    Hh, Ww = labels.shape
    road._sample_collection.update_one(
        {"_id": ObjectId(sample.id), "alc_queries.detections._id": ObjectId(det.id)},
        {
            "$set": {
                "alc_queries.detections.$.rep_yx": [y, x],
                "alc_queries.detections.$.rep_point": [(x + 0.5) / Ww, (y + 0.5) / Hh],
            }
        },
    )
    return {"id": det.id, "rank": det["rank"], "blob": int(blob.sum()), "size": int(region.sum())}


def test_first_visit_grid_colours_context_and_star(
    road, star_on_a_border_object, launch_app, artifacts, browser
):
    from alc_fiftyone.review import class_colors, hex_color

    url = launch_app(road)
    tabs = [browser.page()]
    open_review(tabs[0], url)
    settle(tabs[0])
    shot(tabs[0], artifacts, "1-first-visit")
    # another browser, or the next visit: the stored settings
    tabs.append(browser.page())
    open_review(tabs[1], url)
    settle(tabs[1], 2500)
    shot(tabs[1], artifacts, "2-second-browser")
    problems = []
    for i, page in enumerate(tabs):
        if drawn(page, "alc_queries"):
            problems.append(f"browser {i + 1}: the grid draws the queries on every thumbnail")
    for i, page in enumerate(tabs):
        if not drawn(page, "noisy"):
            problems.append(f"browser {i + 1}: the labels under review are not drawn")

    # one palette in the grid and in the panel, made to keep classes apart
    road.reload()
    scheme = {f["path"]: f for f in road.app_config.color_scheme.fields}
    colors = {t["intTarget"]: t["color"] for t in scheme["noisy"]["maskTargetsColors"]}
    palette = [hex_color(c) for c in class_colors(len(CAMVID))]
    if [colors[v] for v in range(len(CAMVID))] != palette:
        problems.append("the dataset's grid colours are not the panel's")
    closest = min(
        (delta_e(hex_rgb(palette[a]), hex_rgb(palette[b])), CAMVID[a], CAMVID[b])
        for a in range(len(CAMVID))
        for b in range(a + 1, len(CAMVID))
    )
    if closest[0] < 15:
        problems.append(f"classes too alike (CIEDE2000 {closest[0]:.1f}): {closest[1:]}")
    legend = tabs[1].evaluate(
        """() => [...document.querySelectorAll('span')].filter(s => s.style.width === '12px')
                 .map(s => [s.parentElement.innerText.replace('outlined now: ', ''),
                            s.style.background])"""
    )
    assert legend, "no legend in the panel"
    for name, css in legend:
        rgb = tuple(int(v) for v in re.findall(r"\d+", css)[:3])
        if hex_color(rgb) != palette[CAMVID.index(name)]:
            problems.append(f"the legend's {name} is {css}, not {palette[CAMVID.index(name)]}")
    # the grid draws each frame's block in its class's colour (over a flat dark gray), in
    # both browsers: the labels under review ('noisy') as the grid shows them, in its order
    from alc_fiftyone.store.files import read_segmentation

    noisy = [read_segmentation(s_, "noisy") for s_ in road.select_fields("noisy")]
    for i, page in enumerate(tabs):
        shot(page, artifacts, f"3-grid-{i + 1}")
        grid = np.asarray(Image.open(artifacts / f"3-grid-{i + 1}.png").convert("RGB"))
        cells = page.locator("[data-cy='looker'] canvas")
        wrong = []
        for k in range(min(cells.count(), len(BLOCKS))):
            b = cells.nth(k).bounding_box()
            cy = int(b["y"] + b["height"] * (BLOCK[0].start + BLOCK[0].stop) / 2 / H)
            cx = int(b["x"] + b["width"] * (BLOCK[1].start + BLOCK[1].stop) / 2 / W)
            pix = grid[cy - 2 : cy + 3, cx - 2 : cx + 3].reshape(-1, 3).mean(0)
            value = int(
                noisy[k][
                    (BLOCK[0].start + BLOCK[0].stop) // 2, (BLOCK[1].start + BLOCK[1].stop) // 2
                ]
            )
            if value == 0:  # FiftyOne draws no mask value 0 (its background)
                want, a = np.full(3, float(DARK)), 0.0
            else:
                want = np.array(hex_rgb(palette[value]), float)
                # pix = a * colour + (1 - a) * gray: the colour's share, and what is left
                a = float(np.dot(pix - DARK, want - DARK) / np.dot(want - DARK, want - DARK))
            rest = float(np.abs(pix - (a * want + (1 - a) * DARK)).max())
            if not ((value == 0 or 0.3 <= a <= 1.05) and rest <= 14):
                wrong.append((k, CAMVID[value], palette[value], pix.round().tolist()))
        if cells.count() < len(BLOCKS) or wrong:
            problems.append(f"browser {i + 1}: the grid's colours are not the panel's: {wrong}")

    # the picture: the query whose representative pixel sits on a small object at its border
    # (the first tab's reviewer holds it)
    page = tabs[0]
    if shown(page)["rank"] != star_on_a_border_object["rank"]:
        problems.append(f"the first tab shows rank {shown(page)['rank']}")
    pic = card_picture(page).astype(int)
    Image.fromarray(pic.astype(np.uint8)).save(artifacts / "4-picture.png")
    from scipy import ndimage

    star = (pic == (255, 40, 40)).all(2)
    outline = (pic == (255, 255, 0)).all(2)  # the region's outline: yellow inside, black out
    halo = (pic == 0).all(2)
    box = (pic == (0, 200, 255)).all(2)  # the object's box (drawn over the outline)
    assert star.any() and outline.any()
    cy, cx = (float(v.mean()) for v in np.nonzero(star))
    radius = np.sqrt(star.sum() / np.pi)
    depth = ndimage.distance_transform_edt(~outline)[int(cy), int(cx)]
    # inside the region: every ray from the star meets the yellow line before the black one
    sy, sx = np.nonzero(star)
    reach = float(np.sqrt((sy - cy) ** 2 + (sx - cx) ** 2).max()) + 4  # past its black rim
    hits = []
    for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False):
        for t in np.arange(reach, max(pic.shape)):
            y, x = int(cy + t * np.sin(angle)), int(cx + t * np.cos(angle))
            if not (0 <= y < pic.shape[0] and 0 <= x < pic.shape[1]):
                break
            if outline[y, x] or halo[y, x] or box[y, x]:
                hits.append("in" if outline[y, x] else "out" if halo[y, x] else "box")
                break
    if "in" not in hits or "out" in hits:
        problems.append(f"the star is outside the region: {hits}")
    if depth < 1.5 * radius:
        problems.append(
            f"the star sits {depth:.0f} px from the region's outline (its radius "
            f"{radius:.0f} px): on the border, where it names the small object, not the region"
        )
    # the dimmed surroundings stay legible on a dark frame: the sky and the building above the
    # road (the top quarter of the picture, the whole frame here) are context
    frame_px = (pic == (32, 32, 32)).all(2)
    rows = np.flatnonzero((~frame_px).any(1))
    top, bottom = rows[0], rows[-1]
    lines = outline | halo | box | star
    context = np.zeros_like(lines)
    context[top : top + (bottom - top) // 4] = True
    context &= ~lines & ~frame_px
    region = np.zeros_like(lines)
    region[bottom - (bottom - top) // 4 : bottom] = True  # the road, the region asked about
    region &= ~lines & ~frame_px
    lum = pic[context] @ np.array([0.299, 0.587, 0.114])
    region_lum = pic[region] @ np.array([0.299, 0.587, 0.114])
    if lum.mean() < 55:
        problems.append(
            f"the context is nearly black: mean luminance {lum.mean():.0f} of 255 (frames at "
            f"{DARK})"
        )
    if lum.std() < 4:
        problems.append(f"the context has no contrast left: {lum.std():.1f}")
    if region_lum.mean() <= lum.mean():
        problems.append("the region does not stand out of its context")
    assert not problems, "\n".join(problems)


# --- 7. forms: Simulate prefilled, Merge ranking found ---------------------------------------


def test_simulate_is_prefilled_and_merge_ranking_is_found(road, launch_app, artifacts, browser):
    page = browser.page()
    open_review(page, launch_app(road))
    settle(page)
    found = operator_browser(page, "Merge ranking")
    shot(page, artifacts, "1-merge-ranking")
    assert any("Merge ranking" in f for f in found), f"typing 'Merge ranking' lists {found}"
    page.keyboard.press("Escape")
    settle(page, 500)
    found = operator_browser(page, "rank")
    shot(page, artifacts, "2-rank")
    assert found and found[0] == "ALC: Rank superpixels", f"typing 'rank' lists {found}"
    page.keyboard.press("Escape")
    settle(page, 500)
    operator_browser(page, "Simulate correction")
    page.keyboard.press("Enter")
    page.get_by_text("Simulate on", exact=False).first.wait_for(timeout=30_000)
    settle(page, 1000)
    shot(page, artifacts, "3-simulate-form")
    text = dialog_text(page)
    for label, value in (
        ("Label field", "noisy"),
        ("Ground-truth field", "ground_truth"),
        ("Superpixel field", "alc_superpixels"),
    ):
        m = re.search(rf"{label}\n(?:.*\n){{0,3}}?\s*(\S+)\n", text)
        got = m.group(1) if m else None
        if got is not None and got.startswith(("The ", "Superpixel id")):
            got = None
        assert got == value, f"{label}: {got!r}, the dataset records {value!r}: {text[:600]!r}"
    execute(page)
    wait_for(lambda: "Data mIoU per round" in dialog_text(page) or operator_error(page), page, 300)
    shot(page, artifacts, "4-simulated")
    assert not operator_error(page), operator_error(page)
