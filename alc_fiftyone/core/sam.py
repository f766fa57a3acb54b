"""Segment Anything (Kirillov et al., "Segment Anything", ICCV 2023): loading and batched inference.

Only the public modules of the ``segment_anything`` package are called: ``Sam.image_encoder``
(ViT, run on a batch of images at once), ``Sam.prompt_encoder`` and ``Sam.mask_decoder`` (run on
large batches of prompts of one image), ``Sam.preprocess`` / ``Sam.postprocess_masks`` and
``ResizeLongestSide`` (the geometry of the 1024-px input). The loops around them (batching,
filtering, painting) are ours; see :mod:`alc_fiftyone.core.sam_masks`.

Checkpoints are looked up, in order, at an explicit path, in ``$ALC_SAM_CHECKPOINT``, and in
FiftyOne's model-zoo folder under the official file name. Nothing is ever downloaded: a missing
checkpoint is a :class:`SamCheckpointError` that names the file, where to put it and where to
get it.

On CUDA the encoder and decoder run under bf16 autocast; outputs are returned as float32.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ALCError

ENV_CHECKPOINT = "ALC_SAM_CHECKPOINT"
DOWNLOAD_URL = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
CHECKPOINT_FILES = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
MODEL_TYPES = tuple(CHECKPOINT_FILES)


class SamCheckpointError(ALCError, FileNotFoundError):
    """No SAM checkpoint where one was looked for."""


def default_zoo_dir() -> Path:
    """FiftyOne's model-zoo folder without importing FiftyOne (``$FIFTYONE_MODEL_ZOO_DIR`` or
    ``~/fiftyone/__models__``). The FiftyOne adapter passes ``fo.config.model_zoo_dir``."""
    env = os.environ.get("FIFTYONE_MODEL_ZOO_DIR")
    return Path(env).expanduser() if env else Path.home() / "fiftyone" / "__models__"


def _check_type(model_type: str) -> str:
    if model_type not in CHECKPOINT_FILES:
        raise ValueError(f"unknown SAM model type {model_type!r}; choose one of {MODEL_TYPES}")
    return model_type


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a checkpoint (``"does not exist"``, ``"is a folder"``, ...),
    or None when it is an existing, non-empty, readable regular file (links are followed)."""
    if "\x00" in str(path):
        return "is not a valid path"
    try:
        st = path.stat()
    except FileNotFoundError:
        return "does not exist" + (" (a broken link)" if path.is_symlink() else "")
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a checkpoint file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a device, pipe or socket)"
    if st.st_size == 0:
        return "is empty"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied)"
    return None


def find_checkpoint(
    model_type: str = "vit_h", checkpoint: str | os.PathLike | None = None, zoo_dir=None
) -> Path:
    """The checkpoint file to load: ``checkpoint``, else ``$ALC_SAM_CHECKPOINT``, else
    ``<zoo_dir>/<official file name>`` (also searched one folder down, where FiftyOne's zoo
    may keep it). Raises :class:`SamCheckpointError` naming every place looked at."""
    name = CHECKPOINT_FILES[_check_type(model_type)]
    official = f"(model {model_type}: the official file is {name}, from {DOWNLOAD_URL})"
    if checkpoint is not None:
        path = Path(os.fspath(checkpoint)).expanduser()
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        raise SamCheckpointError(f"SAM checkpoint {path} {problem} {official}")
    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        path = Path(env).expanduser()
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        raise SamCheckpointError(f"${ENV_CHECKPOINT} points to {path}, which {problem} {official}")
    zoo = Path(zoo_dir).expanduser() if zoo_dir is not None else default_zoo_dir()
    for cand in [zoo / name, *sorted(zoo.glob(f"*/{name}"))] if zoo.is_dir() else []:
        if checkpoint_problem(cand) is None:
            return cand
    raise SamCheckpointError(
        f"no SAM {model_type} checkpoint found: download {name} from {DOWNLOAD_URL} and put it "
        f"in FiftyOne's model zoo folder {zoo}, or set ${ENV_CHECKPOINT} to its path, or pass "
        "checkpoint=... (nothing is downloaded automatically)"
    )


def resolve_device(device="auto"):
    """``"auto"``: CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_sam(
    model_type: str = "vit_h", checkpoint=None, device="auto", zoo_dir=None
):  # -> segment_anything.modeling.Sam
    """Build SAM ``model_type`` from its checkpoint (see :func:`find_checkpoint`), in eval
    mode on ``device``."""
    path = find_checkpoint(model_type, checkpoint, zoo_dir)
    from segment_anything import sam_model_registry

    try:
        # torch.load inside refuses pickled code (weights_only, the torch >= 2.6 default)
        sam = sam_model_registry[model_type](checkpoint=str(path))
    except Exception as e:  # torch and pickle raise many types for a wrong or damaged file
        raise SamCheckpointError(
            f"cannot load SAM {model_type} checkpoint {path}: {type(e).__name__}: "
            f"{str(e)[:300]} (is it the official {CHECKPOINT_FILES[model_type]}, complete?)"
        ) from e
    sam.checkpoint_name = path.name
    return sam.to(resolve_device(device)).eval()


def random_sam(model_type: str = "vit_b", seed: int = 0, device="cpu"):
    """SAM with randomly initialised weights (``checkpoint=None``), for tests and speed
    benchmarks only: its masks mean nothing."""
    import torch
    from segment_anything import sam_model_registry

    torch.manual_seed(seed)
    sam = sam_model_registry[_check_type(model_type)](checkpoint=None)
    sam.checkpoint_name = f"random-{model_type}-seed{seed}"
    return sam.to(resolve_device(device)).eval()


def tiny_random_sam(seed: int = 0, img_size: int = 256, device="cpu"):
    """A very small randomly initialised SAM (2-block ViT encoder, ``img_size`` input) built
    from ``segment_anything.modeling``: the same interfaces as the real models, for fast
    tests of the code around them. Its masks mean nothing."""
    from functools import partial

    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    grid = img_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=2,
            embed_dim=64,
            img_size=img_size,
            mlp_ratio=2,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=2,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=(1,),
            window_size=4,
            out_chans=256,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=256, mlp_dim=512, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    sam.checkpoint_name = f"tiny-random-seed{seed}"
    return sam.to(resolve_device(device)).eval()


def model_key(sam) -> str:
    """A short name of the weights (for embedding caches): the checkpoint file stem, or the
    architecture when unknown."""
    name = getattr(sam, "checkpoint_name", None)
    if name:
        return Path(str(name)).stem
    return f"sam-{sam.image_encoder.patch_embed.proj.out_channels}d"


def autocast(device):
    """bf16 autocast on CUDA, nothing elsewhere."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class ImageEmbedding:
    """One image's encoder output with the geometry needed to decode masks for it."""

    embedding: object  # torch.Tensor (C, h, w), float32
    input_size: tuple[int, int]  # (h, w) of the resized image inside the square input
    original_size: tuple[int, int]  # (H, W) of the image

    def to(self, device) -> ImageEmbedding:
        return ImageEmbedding(self.embedding.to(device), self.input_size, self.original_size)


def _check_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"SAM expects (H, W, 3) uint8 RGB images, got {image.shape} {image.dtype}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("image is empty")
    return image


def preprocess(sam, image: np.ndarray):
    """(1, 3, S, S) normalised, padded input of one image and its resized (h, w)."""
    import torch
    import torch.nn.functional as F
    from segment_anything.utils.transforms import ResizeLongestSide

    image = _check_rgb(image)
    size = sam.image_encoder.img_size
    h, w = ResizeLongestSide.get_preprocess_shape(image.shape[0], image.shape[1], size)
    x = torch.as_tensor(image, device=sam.device).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False, antialias=True)
    return sam.preprocess(x), (h, w)


def encode_images(sam, images, batch_size: int = 8) -> list[ImageEmbedding]:
    """Run ``Sam.image_encoder`` on ``images`` ((H, W, 3) uint8 each), ``batch_size`` at a time."""
    import torch

    out: list[ImageEmbedding] = []
    images = list(images)
    for start in range(0, len(images), max(1, int(batch_size))):
        chunk = images[start : start + max(1, int(batch_size))]
        xs, sizes = zip(*(preprocess(sam, im) for im in chunk))
        with torch.inference_mode(), autocast(sam.device):
            emb = sam.image_encoder(torch.cat(xs)).float()
        for e, size, im in zip(emb, sizes, chunk):
            out.append(ImageEmbedding(e, tuple(size), tuple(np.asarray(im).shape[:2])))
    return out


def decode(sam, emb: ImageEmbedding, points=None, boxes=None, multimask: bool = True):
    """Decode a batch of prompts of one image: ``points`` (N, P, 2) pixel (x, y) coordinates
    of the original image, all foreground, and/or ``boxes`` (N, 4) xyxy pixels.

    Returns low-resolution mask logits (N, M, h', w') and predicted IoUs (N, M), float32,
    M = 3 with ``multimask`` else 1.
    """
    import torch
    from segment_anything.utils.transforms import ResizeLongestSide

    transform = ResizeLongestSide(sam.image_encoder.img_size)
    device = sam.device
    point_arg = box_arg = None
    if points is not None:
        coords = torch.as_tensor(points, device=device, dtype=torch.float32)
        coords = transform.apply_coords_torch(coords, emb.original_size)
        labels = torch.ones(coords.shape[:2], device=device, dtype=torch.int64)
        point_arg = (coords, labels)
    if boxes is not None:
        b = torch.as_tensor(boxes, device=device, dtype=torch.float32).reshape(-1, 4)
        box_arg = transform.apply_boxes_torch(b, emb.original_size)
    with torch.inference_mode(), autocast(device):
        sparse, dense = sam.prompt_encoder(points=point_arg, boxes=box_arg, masks=None)
        low, iou = sam.mask_decoder(
            image_embeddings=emb.embedding[None].to(device),
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
    return low.float(), iou.float()


def upscale(sam, low, emb: ImageEmbedding, exact: bool = False):
    """Low-resolution logits (N, M, h', w') -> logits (N, M, H, W) at the original image size.

    ``exact`` uses ``Sam.postprocess_masks`` (upsample to the padded square, crop, resize:
    two bilinear passes through a 1024 x 1024 map per mask). The default samples the
    low-resolution logits once, bilinearly, at each original pixel's position
    (``grid_sample``): the same geometry without the large intermediate, much less memory and
    time for thousands of masks; values differ from the exact path only by the difference
    between one and two bilinear interpolations.
    """
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        if exact:
            return sam.postprocess_masks(low, emb.input_size, emb.original_size)
        N, M, h, w = low.shape
        H, W = emb.original_size
        S = float(sam.image_encoder.img_size)
        ih, iw = emb.input_size
        dev = low.device
        gx = ((torch.arange(W, device=dev, dtype=torch.float32) + 0.5) / W * iw) / S * 2 - 1
        gy = ((torch.arange(H, device=dev, dtype=torch.float32) + 0.5) / H * ih) / S * 2 - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]  # (1,H,W,2)
        out = F.grid_sample(
            low.reshape(1, N * M, h, w).float(), grid, mode="bilinear", align_corners=False
        )
        return out.reshape(N, M, H, W)


def box_masks(
    sam,
    emb: ImageEmbedding,
    boxes,
    batch_size: int = 64,
    box_margin: float | None = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """One mask per box (xyxy pixels of the original image), as Grounded-SAM does.

    ``box_margin`` (a fraction of the box's width/height; None: off) drops mask pixels farther
    than that outside their box, so a prompt cannot paint far away from its object.
    Returns (N, H, W) bool masks and (N,) predicted IoUs, on the CPU.
    """
    import torch

    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    H, W = emb.original_size
    masks = np.zeros((len(boxes), H, W), dtype=bool)
    scores = np.zeros(len(boxes), dtype=np.float32)
    for start in range(0, len(boxes), max(1, int(batch_size))):
        b = boxes[start : start + batch_size]
        low, iou = decode(sam, emb, boxes=b, multimask=False)
        m = upscale(sam, low, emb)[:, 0] > sam.mask_threshold
        if box_margin is not None:
            m &= _box_region(torch.as_tensor(b, device=m.device), H, W, box_margin)
        masks[start : start + len(b)] = m.cpu().numpy()
        scores[start : start + len(b)] = iou[:, 0].cpu().numpy()
    return masks, scores


def _box_region(boxes, H: int, W: int, margin: float):
    """(N, H, W) bool: the pixels inside each xyxy box grown by ``margin`` of its size."""
    import torch

    bw = (boxes[:, 2] - boxes[:, 0]).clamp(min=1) * margin
    bh = (boxes[:, 3] - boxes[:, 1]).clamp(min=1) * margin
    xs = torch.arange(W, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(H, device=boxes.device, dtype=torch.float32) + 0.5
    inx = (xs[None] >= (boxes[:, 0] - bw)[:, None]) & (xs[None] <= (boxes[:, 2] + bw)[:, None])
    iny = (ys[None] >= (boxes[:, 1] - bh)[:, None]) & (ys[None] <= (boxes[:, 3] + bh)[:, None])
    return iny[:, :, None] & inx[:, None, :]
