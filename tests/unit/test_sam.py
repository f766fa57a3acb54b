"""SAM loading, automatic masks, painting and SAM superpixels on arrays (no weights needed).

Models are randomly initialised (``checkpoint=None``): the tests check shapes, types,
coverage, determinism and the painting rules, never the quality of the masks. Most use a tiny
SAM built from ``segment_anything.modeling`` (same interfaces, 256-px input) to stay fast on a
CPU; one test runs the real ViT-B architecture.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alc_fiftyone.core import sam as csam
from alc_fiftyone.core.sam_masks import (
    automatic_masks,
    masks_to_boxes,
    paint_classes,
    paint_masks_torch,
    point_grid,
    sam_superpixels,
    sam_superpixels_batch,
    stability_score,
)
from alc_fiftyone.core.superpixels import (
    instance_superpixels,
    merge_small_regions,
    paint_masks,
    superpixels_from_regions,
)

H, W = 40, 56
NO_THRESHOLDS = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def _image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 40, 40)
    img[h // 2 :, w // 2 :] = (30, 160, 60)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny():
    return csam.tiny_random_sam(seed=0)


@pytest.fixture(scope="module")
def tiny_emb(tiny):
    return csam.encode_images(tiny, [_image()])[0]


def _assert_full_coverage(ids: np.ndarray, shape) -> None:
    assert ids.dtype == np.uint16 and ids.shape == tuple(shape)
    assert ids.min() >= 1, "every pixel must have a superpixel"
    assert set(np.unique(ids).tolist()) == set(range(1, int(ids.max()) + 1))


# --- checkpoints -------------------------------------------------------------------------------


def test_missing_checkpoint_error_names_file_place_and_url(tmp_path, monkeypatch):
    monkeypatch.delenv(csam.ENV_CHECKPOINT, raising=False)
    zoo = tmp_path / "zoo"
    with pytest.raises(csam.SamCheckpointError) as e:
        csam.load_sam("vit_b", zoo_dir=zoo)
    msg = str(e.value)
    assert "sam_vit_b_01ec64.pth" in msg and str(zoo) in msg
    assert csam.ENV_CHECKPOINT in msg and csam.DOWNLOAD_URL in msg
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(csam.SamCheckpointError, match="does not exist"):
        csam.find_checkpoint("vit_h", checkpoint=tmp_path / "nope.pth")
    monkeypatch.setenv(csam.ENV_CHECKPOINT, str(tmp_path / "missing.pth"))
    with pytest.raises(csam.SamCheckpointError, match=csam.ENV_CHECKPOINT):
        csam.find_checkpoint("vit_h", zoo_dir=zoo)
    with pytest.raises(ValueError, match="unknown SAM model type"):
        csam.find_checkpoint("vit_x")


def test_checkpoint_lookup_order(tmp_path, monkeypatch):
    monkeypatch.delenv(csam.ENV_CHECKPOINT, raising=False)
    zoo = tmp_path / "zoo"
    (zoo / "segment-anything-vitb").mkdir(parents=True)
    in_zoo = zoo / "segment-anything-vitb" / "sam_vit_b_01ec64.pth"
    in_zoo.write_bytes(b"x")  # not empty: an empty file is refused
    assert csam.find_checkpoint("vit_b", zoo_dir=zoo) == in_zoo
    env = tmp_path / "env.pth"
    env.write_bytes(b"x")  # not empty: an empty file is refused
    monkeypatch.setenv(csam.ENV_CHECKPOINT, str(env))
    assert csam.find_checkpoint("vit_b", zoo_dir=zoo) == env
    explicit = tmp_path / "explicit.pth"
    explicit.write_bytes(b"x")  # not empty: an empty file is refused
    assert csam.find_checkpoint("vit_b", checkpoint=explicit, zoo_dir=zoo) == explicit


def test_resolve_device():
    assert csam.resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert csam.resolve_device("auto").type == expected


# --- pure helpers ------------------------------------------------------------------------------


def test_point_grid_centres():
    g = point_grid(4)
    assert g.shape == (16, 2)
    assert np.allclose(np.unique(g[:, 0]), [0.125, 0.375, 0.625, 0.875])
    with pytest.raises(ValueError):
        point_grid(0)


def test_stability_score_and_boxes():
    logits = torch.tensor([[[3.0, 0.5], [-0.5, -3.0]]])
    # > +1: 1 pixel; > -1: 3 pixels
    assert torch.allclose(stability_score(logits, 0.0, 1.0), torch.tensor([1 / 3]))
    m = torch.zeros((2, 5, 6), dtype=torch.bool)
    m[0, 1:3, 2:5] = True
    assert masks_to_boxes(m).tolist() == [[2.0, 1.0, 4.0, 2.0], [0.0, 0.0, 0.0, 0.0]]


def test_painting_smaller_masks_win_and_largest_first():
    big = np.zeros((6, 6), bool)
    big[:, :] = True
    small = np.zeros((6, 6), bool)
    small[1:3, 1:3] = True
    mid = np.zeros((6, 6), bool)
    mid[0:4, 0:4] = True
    masks = np.stack([small, big, mid])  # order of the list must not matter
    painted = paint_masks(masks)
    assert (painted[1:3, 1:3] == 1).all()  # the smallest wins
    assert painted[3, 3] == 3 and painted[0, 0] == 3  # mid over big
    assert painted[5, 5] == 2
    assert np.array_equal(paint_masks_torch(torch.from_numpy(masks)).numpy(), painted)
    labels, inst = paint_classes(masks, [7, 1, 4], fill_value=255)
    assert labels[1, 1] == 7 and labels[3, 3] == 4 and labels[5, 5] == 1
    assert inst.dtype == np.uint16 and np.array_equal(inst, painted)
    labels, inst = paint_classes(masks[:1], [7], fill_value=255)
    assert labels[5, 5] == 255 and inst[5, 5] == 0


def test_paint_torch_matches_numpy_on_random_masks():
    rng = np.random.default_rng(0)
    masks = rng.random((9, 12, 10)) < rng.random((9, 1, 1))
    assert np.array_equal(
        paint_masks_torch(torch.from_numpy(masks), chunk=4).numpy(), paint_masks(masks)
    )


def test_superpixels_from_regions_fill_split_and_merge():
    img = _image()
    regions = np.zeros((H, W), np.int64)
    regions[2:12, 2:12] = 5
    regions[20:30, 40:50] = 5  # same id, second piece: becomes its own superpixel
    regions[30:32, 0:3] = 9  # 6 px fragment
    ids = superpixels_from_regions(regions, image=img, fill=True, min_area=10)
    _assert_full_coverage(ids, (H, W))
    assert len(np.unique(ids[2:12, 2:12])) == 1 and len(np.unique(ids[20:30, 40:50])) == 1
    assert ids[5, 5] != ids[25, 45]
    sizes = np.bincount(ids.ravel())[1:]
    assert sizes.min() >= 10  # the fragment was merged
    # without an image the gaps become their connected components
    ids2 = superpixels_from_regions(regions, image=None, fill=True, min_area=0)
    _assert_full_coverage(ids2, (H, W))


def test_instance_superpixels_paper_leaves_gaps_option_fills():
    masks = np.zeros((2, H, W), bool)
    masks[0, 5:30, 5:30] = True
    masks[1, 10:20, 10:20] = True
    paper = instance_superpixels(masks)
    assert paper.dtype == np.uint16 and paper[0, 0] == 0 and paper.max() == 2
    assert paper[15, 15] != paper[6, 6] and paper[15, 15] > 0
    filled = instance_superpixels(masks, image=_image(), fill=True)
    _assert_full_coverage(filled, (H, W))
    assert filled[15, 15] != filled[6, 6]


def test_merge_small_regions_keeps_isolated_and_zero():
    ids = np.zeros((6, 8), np.int64)
    ids[:, :4] = 1
    ids[:, 4:6] = 2
    ids[0, 7] = 3  # isolated by zeros
    out = merge_small_regions(ids, min_area=13)
    assert out[0, 0] == out[0, 5]  # region 2 (12 px) merged into 1
    assert out[0, 7] > 0 and out[0, 6] == 0 and out[0, 7] != out[0, 0]


# --- with a random tiny SAM -------------------------------------------------------------------


def test_encode_shapes_and_batching_consistent(tiny):
    imgs = [_image(0), _image(1, 30, 64)]
    one = [csam.encode_images(tiny, [im])[0] for im in imgs]
    both = csam.encode_images(tiny, imgs, batch_size=2)
    for a, b, im in zip(one, both, imgs):
        assert b.original_size == im.shape[:2]
        assert b.embedding.shape == (256, 16, 16) and b.embedding.dtype == torch.float32
        assert torch.allclose(a.embedding, b.embedding, atol=1e-4)
    assert both[1].input_size == (120, 256)
    with pytest.raises(ValueError, match="uint8"):
        csam.encode_images(tiny, [np.zeros((4, 4), np.uint8)])


def test_fast_upscale_matches_exact(tiny, tiny_emb):
    low, iou = csam.decode(tiny, tiny_emb, points=np.array([[[10.0, 10.0]], [[40.0, 30.0]]]))
    assert low.shape[:2] == (2, 3) and iou.shape == (2, 3)
    fast = csam.upscale(tiny, low, tiny_emb)
    exact = csam.upscale(tiny, low, tiny_emb, exact=True)
    assert fast.shape == exact.shape == (2, 3, H, W)
    assert ((fast > 0) != (exact > 0)).float().mean() < 0.1


def test_automatic_masks_filters_and_caps(tiny, tiny_emb):
    masks, scores = automatic_masks(tiny, tiny_emb, points_per_side=4, **NO_THRESHOLDS)
    assert masks.dtype == torch.bool and masks.shape[1:] == (H, W)
    assert len(masks) == len(scores) >= 1
    assert torch.all(scores[:-1] >= scores[1:])
    none, _ = automatic_masks(tiny, tiny_emb, points_per_side=4, pred_iou_thresh=2.0)
    assert none.shape == (0, H, W)
    capped, _ = automatic_masks(
        tiny, tiny_emb, points_per_side=4, box_nms_thresh=1.0, max_masks=2, **NO_THRESHOLDS
    )
    assert len(capped) == 2


def test_sam_superpixels_full_coverage_and_deterministic(tiny, tiny_emb):
    img = _image()
    kw = dict(points_per_side=4, min_area=20, box_nms_thresh=1.0, **NO_THRESHOLDS)
    a = sam_superpixels(img, tiny, embedding=tiny_emb, **kw)
    _assert_full_coverage(a, (H, W))
    b = sam_superpixels(img, tiny, **kw)  # encodes itself
    assert np.array_equal(a, b)
    other = csam.tiny_random_sam(seed=0)  # same seed, same weights, same result
    assert np.array_equal(sam_superpixels(img, other, **kw), a)
    # no mask kept at all: SLIC fills the whole image
    c = sam_superpixels(img, tiny, embedding=tiny_emb, points_per_side=2, pred_iou_thresh=2.0)
    _assert_full_coverage(c, (H, W))
    with pytest.raises(ValueError, match="embedding is for"):
        sam_superpixels(_image(0, 20, 20), tiny, embedding=tiny_emb)


def test_batch_pipeline_equals_one_by_one(tiny):
    imgs = [_image(0), _image(1, 30, 64), _image(2)]
    kw = dict(points_per_side=3, min_area=15, box_nms_thresh=1.0, **NO_THRESHOLDS)
    batched = list(sam_superpixels_batch(imgs, tiny, batch_size=2, workers=2, **kw))
    assert len(batched) == 3
    for img, ids in zip(imgs, batched):
        _assert_full_coverage(ids, img.shape[:2])
        assert np.array_equal(ids, sam_superpixels(img, tiny, **kw))
    with pytest.raises(TypeError, match="unknown SAM superpixel parameters"):
        list(sam_superpixels_batch(imgs, tiny, n_segments=3))


def test_box_masks_stay_near_their_boxes(tiny, tiny_emb):
    boxes = np.array([[5, 5, 25, 20], [30, 10, 50, 35]], np.float32)
    masks, scores = csam.box_masks(tiny, tiny_emb, boxes, box_margin=0.1)
    assert masks.shape == (2, H, W) and masks.dtype == bool and scores.shape == (2,)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    for m, (x0, y0, x1, y1) in zip(masks, boxes):
        mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        inside = (xs >= x0 - mx) & (xs <= x1 + mx) & (ys >= y0 - my) & (ys <= y1 + my)
        assert not (m & ~inside).any()
    raw, _ = csam.box_masks(tiny, tiny_emb, boxes, box_margin=None)
    assert (raw | masks).sum() >= masks.sum()


# --- the real ViT-B architecture, random weights -----------------------------------------------


def test_vit_b_random_weights_superpixels():
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"](checkpoint=None).eval()
    img = _image(2, 24, 32)
    emb = csam.encode_images(sam, [img])[0]
    assert emb.embedding.shape == (256, 64, 64) and emb.input_size == (768, 1024)
    ids = sam_superpixels(img, sam, embedding=emb, points_per_side=2, min_area=10)
    _assert_full_coverage(ids, (24, 32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_batched_encoder_and_superpixels():
    sam = csam.random_sam("vit_b", seed=0, device="cuda")
    imgs = [_image(i, 375, 500) for i in range(3)]
    embs = csam.encode_images(sam, imgs, batch_size=3)
    assert all(e.embedding.dtype == torch.float32 and e.embedding.is_cuda for e in embs)
    for img, emb in zip(imgs, embs):
        ids = sam_superpixels(img, sam, embedding=emb, points_per_side=16, **NO_THRESHOLDS)
        _assert_full_coverage(ids, (375, 500))
