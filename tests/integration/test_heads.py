"""The learned probability models (``sam_head``, ``backbone:resnet50``) on real FiftyOne
datasets with tiny images and random weights: shapes, normalisation, determinism, the
out-of-fold property, exact alignment with the image, the embeddings cache, clear errors, and
ranking / simulation end to end. Random weights say nothing about quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import alc_fiftyone as alc
from alc_fiftyone.core import head as ch
from alc_fiftyone.core import sam as csam
from alc_fiftyone.core.sam import ImageEmbedding, SamCheckpointError
from alc_fiftyone.errors import ALCError
from alc_fiftyone.models import embeddings as fsam
from alc_fiftyone.models.base import FitContext
from alc_fiftyone.models.heads import GridEmbedder, HeadModel
from alc_fiftyone.models.registry import get_model
from alc_fiftyone.store.files import read_segmentation

torch.set_num_threads(1)

# (H, W): non-square, odd, both orientations
SIZES = [(48, 64), (64, 48), (47, 93), (93, 47), (48, 64), (47, 93)]


@pytest.fixture(scope="module")
def tiny():
    return csam.tiny_random_sam(seed=0)


def _write_split_dataset(ds, tmp_path, axis=1, sizes=SIZES):
    """Images and 2-class labels split in the middle along ``axis`` (1: left/right)."""
    import fiftyone as fo

    rng = np.random.default_rng(0)
    samples = []
    for i, (H, W) in enumerate(sizes):
        labels = np.zeros((H, W), np.uint8)
        if axis == 1:
            labels[:, W // 2 :] = 1
        else:
            labels[H // 2 :] = 1
        img = np.where(labels[..., None] == 1, (40, 60, 200), (200, 60, 40)).astype(np.uint8)
        img = np.clip(img + rng.integers(0, 30, img.shape), 0, 255).astype(np.uint8)
        ip, lp = tmp_path / f"img{i}.png", tmp_path / f"lab{i}.png"
        Image.fromarray(img).save(ip)
        Image.fromarray(labels).save(lp)
        samples.append(fo.Sample(filepath=str(ip), gt=fo.Segmentation(mask_path=str(lp))))
    ds.add_samples(samples)
    ds.mask_targets = {"gt": {0: "left", 1: "right"}}
    ds.save()
    alc.compute_superpixels(ds, method="slic", n_segments=12)
    return ds


@pytest.fixture
def split_ds(make_dataset, tmp_path, tmp_alc_dir):
    return _write_split_dataset(make_dataset(), tmp_path)


def _ctx(ds, overrides=None):
    overrides = overrides or {}

    def read_labels(sample):
        if sample.id in overrides:
            return overrides[sample.id]
        return read_segmentation(sample, "gt")

    return FitContext(ds, read_labels, "alc_superpixels", 2, None)


def _predict_all(model, ds):
    return {
        s.id: model.predict(s, read_segmentation(s, "alc_superpixels"), None)
        for s in ds.iter_samples()
    }


def test_sam_head_shapes_sum_and_determinism(split_ds, tiny):
    ds = split_ds
    progress = []
    model = get_model("sam_head", sam=tiny, epochs=4, device="cpu")
    ctx = _ctx(ds)
    ctx.progress = lambda d, t, desc: progress.append(desc)
    model.fit(ctx)
    out = _predict_all(model, ds)
    for s in ds:
        p = out[s.id]
        H, W = read_segmentation(s, "gt").shape
        assert p.shape == (2, H, W) and p.dtype == np.float32
        assert np.isfinite(p).all() and (p >= 0).all()
        assert np.allclose(p.sum(0), 1, atol=1e-5)
    assert {"SAM embeddings", "sam_head", "sam_head training"} <= set(progress)
    again = get_model("sam_head", sam=tiny, epochs=4, device="cpu")
    again.fit(_ctx(ds))
    for sid, p in _predict_all(again, ds).items():
        assert np.array_equal(p, out[sid])
    d = model.describe()
    assert d["name"] == "sam_head" and d["features"] == "sam:tiny-random-seed0"
    assert d["head"] == "linear" and d["n_folds"] == 5
    # the embeddings went to the shared cache of alc_fiftyone.models.embeddings
    for s in ds:
        assert fsam.embedding_path(ds, s.id, tiny).is_file()


def test_sam_head_mlp_and_other_seed(split_ds, tiny):
    a = get_model("sam_head", sam=tiny, epochs=2, hidden=16, device="cpu", seed=0)
    b = get_model("sam_head", sam=tiny, epochs=2, hidden=16, device="cpu", seed=1)
    a.fit(_ctx(split_ds))
    b.fit(_ctx(split_ds))
    s = split_ds.first()
    sp = read_segmentation(s, "alc_superpixels")
    pa, pb = a.predict(s, sp), b.predict(s, sp)
    assert a.describe()["head"] == "mlp16"
    assert not np.array_equal(pa, pb)


def test_sam_head_is_out_of_fold(split_ds, tiny):
    """A sample's probabilities do not move when its own labels change (its fold's head
    never saw them); those of a sample in another fold do."""
    ds = split_ds
    ids = ds.values("id")
    first, other = ds[ids[0]], ds[ids[-1]]
    base = get_model("sam_head", sam=tiny, epochs=5, n_folds=3, device="cpu")
    base.fit(_ctx(ds))
    flipped = 1 - read_segmentation(first, "gt")
    changed = get_model("sam_head", sam=tiny, epochs=5, n_folds=3, device="cpu")
    changed.fit(_ctx(ds, {first.id: flipped}))
    sp0 = read_segmentation(first, "alc_superpixels")
    sp1 = read_segmentation(other, "alc_superpixels")
    assert np.allclose(base.predict(first, sp0), changed.predict(first, sp0), atol=1e-6)
    assert not np.allclose(base.predict(other, sp1), changed.predict(other, sp1), atol=1e-4)


class PositionEmbedder(GridEmbedder):
    """Features = the position of each cell centre as a fraction of the resized image's
    width and height in the padded frame: a boundary learned by a linear head lands where the
    labels put it only if pooling and upsampling are aligned with the image."""

    key = "position"
    frame = 1024

    def get(self, sample):
        H, W = read_segmentation(sample, "gt").shape
        h, w = ch.preprocess_shape(H, W, self.frame)
        g = 64
        c = (torch.arange(g, dtype=torch.float32) + 0.5) * (self.frame / g)
        emb = torch.stack([(c / w)[None].expand(g, g), (c / h)[:, None].expand(g, g)])
        return ImageEmbedding(emb, (h, w), (H, W))


@pytest.mark.parametrize("axis", [1, 0])
def test_learned_boundary_lands_within_a_pixel(make_dataset, tmp_path, tmp_alc_dir, axis):
    ds = _write_split_dataset(make_dataset(), tmp_path, axis=axis)
    model = HeadModel(PositionEmbedder(), n_folds=2, epochs=300, lr=0.05, device="cpu")
    model.fit(_ctx(ds))
    for s in ds:
        labels = read_segmentation(s, "gt")
        p = model.predict(s, read_segmentation(s, "alc_superpixels"))
        pred = (p[1] > 0.5).astype(np.uint8)
        line = pred.mean(axis=0) if axis == 1 else pred.mean(axis=1)
        truth = labels.shape[axis] // 2
        first = int(np.argmax(line > 0.5))
        assert abs(first - truth) <= 1, (labels.shape, first, truth)
        assert (pred != labels).mean() < 0.05


def test_rank_and_simulate_with_sam_head(unique_name, tmp_alc_dir, tiny):
    ds = alc.make_demo_dataset(name=unique_name, num_samples=4, size=(56, 40), seed=1)
    try:
        alc.compute_superpixels(ds, method="slic", n_segments=20)
        kwargs = {"sam": tiny, "epochs": 2, "device": "cpu"}
        summary = alc.rank_superpixels(
            ds, "pseudo", budget=5, model="sam_head", model_kwargs=kwargs
        )
        assert summary["num_queries"] == 5
        assert summary["model"]["name"] == "sam_head"
        res = alc.simulate(
            ds,
            "pseudo",
            "ground_truth",
            rounds=2,
            budget_per_round=0.1,
            model="sam_head",
            model_kwargs=kwargs,
        )
        assert len(res.mious) == 3 and all(0 <= m <= 1 for m in res.mious)
    finally:
        ds.delete()


def test_missing_sam_checkpoint_is_a_clear_error(split_ds, tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "sam_vit_b.pth"
    model = get_model("sam_head", model_type="vit_b", checkpoint=str(missing))
    with pytest.raises(SamCheckpointError, match="does not exist"):
        alc.rank_superpixels(split_ds, "gt", budget=2, model=model)
    monkeypatch.setenv("ALC_SAM_CHECKPOINT", str(missing))
    with pytest.raises(SamCheckpointError, match="ALC_SAM_CHECKPOINT"):
        get_model("sam_head", model_type="vit_b").fit(_ctx(split_ds))


def test_wrong_label_size_names_the_sample(split_ds, tiny):
    s = split_ds.first()
    with pytest.raises(alc.SampleError, match=s.id):
        get_model("sam_head", sam=tiny, epochs=1, device="cpu").fit(
            _ctx(split_ds, {s.id: np.zeros((3, 3), np.uint8)})
        )


def test_backbone_head_random_resnet50(split_ds):
    model = get_model("backbone:resnet50", weights=None, frame=64, epochs=3, device="cpu")
    model.fit(_ctx(split_ds))
    out = _predict_all(model, split_ds)
    for s in split_ds:
        p = out[s.id]
        assert p.shape == (2, *read_segmentation(s, "gt").shape) and p.dtype == np.float32
        assert np.allclose(p.sum(0), 1, atol=1e-5)
    assert model.name == "backbone:resnet50"
    assert model.describe()["features"] == "resnet50-layer3-64-random-seed0"
    again = get_model("backbone:resnet50", weights=None, frame=64, epochs=3, device="cpu")
    again.fit(_ctx(split_ds))
    s = split_ds.first()
    sp = read_segmentation(s, "alc_superpixels")
    assert np.array_equal(again.predict(s, sp), out[s.id])


def test_backbone_missing_weights_name_path_and_env(split_ds, tmp_path, monkeypatch):
    monkeypatch.delenv("ALC_BACKBONE_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ALCError, match=r"hub/checkpoints/resnet50-.*ALC_BACKBONE_WEIGHTS"):
        get_model("backbone:resnet50", frame=64).fit(_ctx(split_ds))
    monkeypatch.setenv("ALC_BACKBONE_WEIGHTS", str(tmp_path / "w.pth"))
    with pytest.raises(ALCError, match=r"w\.pth"):
        get_model("backbone:resnet50", frame=64).fit(_ctx(split_ds))
    with pytest.raises(ValueError, match="unknown backbone"):
        get_model("backbone:vgg16")


@pytest.mark.gpu
def test_sam_head_on_cuda_matches_cpu(split_ds, tiny):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = get_model("sam_head", sam=tiny, epochs=3, device="cpu")
    cpu.fit(_ctx(split_ds))
    gpu = get_model("sam_head", sam=tiny, epochs=3, device="cuda")
    gpu.fit(_ctx(split_ds))  # same cached embeddings, head trained on the GPU
    s = split_ds.first()
    sp = read_segmentation(s, "alc_superpixels")
    assert np.allclose(cpu.predict(s, sp), gpu.predict(s, sp), atol=1e-3)
