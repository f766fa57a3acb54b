"""Superpixel acquisition functions for active label correction.

Ranks the superpixels of one image for a correction query. The proposed function is the
look-ahead SIM of Kim, Hwang, Kwak and Ok, "Active Label Correction for Semantic Segmentation
with Foundation Models", ICML 2024 (PMLR 235): the expected number of pixels one answer fixes,

    A(s) = sum_{x in E(s)} w(x; s) * a(x),

with ``a(x) = 1 - P(y'(x) | x)`` (y' the current label, or the model's argmax where the label
is ignore), ``w(x; s)`` the cosine between the probability vectors of x and of the
representative pixel rep(s), and ``E(s) = {x in s : w(x; s) >= tau}`` the expansion region.
rep(s) is, among the pixels of s whose argmax is the dominant (most frequent) predicted class
of s, the one whose probability vector is closest (cosine) to their mean vector; ties go to the
first pixel in row-major order.

Baselines: pixel-CIL ``a(rep(s))`` and mean-CIL (mean of ``a`` over E(s)) from the same paper;
entropy and margin (best-versus-second-best) uncertainty; ClassBal from Cai et al.,
"Revisiting Superpixels for Active Learning in Semantic Segmentation with Realistic
Annotation Costs", CVPR 2021; the adaptively balanced ABC function from Jeon, Cho, Woo and Kim,
"Active and Automated Label Correction for Semantic Segmentation" (A2LC, arXiv 2506.11599);
and seeded random.

Three backends compute the same thing. The CPU default is numba (when it is importable;
numpy otherwise): four fused passes over the pixels in row-major order (pass 1 in tiles of
pixels, the others in runs of pixels of one superpixel within an image row). Pass 1 takes the
argmax, the pixel norms, a(x) and the class histogram of every superpixel (hence its dominant
class); pass 2 sums the probability vectors of the dominant-class pixels (their mean); pass 3
takes the cosine of every pixel to its superpixel's mean and keeps the highest among the
dominant-class pixels, the first in row-major order on ties (rep(s)); pass 4 takes the cosine
to the representative and sums w * a over E(s). It is compiled once per process on first use
(and cached on disk), runs on one thread and releases the GIL.

The numpy and torch backends are vectorised over the pixels of the image (no Python loop over
superpixels, only over the C classes): a dense superpixel index per pixel, the dominant class by
``bincount(sid * C + argmax)``, and the representative as one segment maximum of an int64 key
packing the float32 cosine (high bits) and the negated pixel position (low bits), so that the
largest key is the highest cosine and, among equal cosines, the first pixel in row-major
order. On numpy the valid pixels are first grouped by (superpixel, dominant or not) with one
stable radix sort, which turns per-superpixel gathers into ``np.repeat`` and segment sums
into ``reduceat``; on torch (CPU or CUDA) gathers are ``index_select`` and segment sums
``index_add_`` / ``scatter_reduce_``. The arithmetic that decides the representative and the
expansion region is float32 in the same operation order on all backends (per-superpixel
means summed in float64, then rounded), so they choose the same pixels, ties included.
:func:`score_loop` is a plain per-superpixel loop of the same semantics, kept as a readable
reference and as the baseline of ``benchmarks/acquisition_speed.py``.
"""

from .api import expansion_mask, runs_on_host, score_superpixels
from .common import (
    METHODS,
    SuperpixelScores,
    abc_class_weights,
    class_prior_from_dominant,
    classbal_scores,
)
from .numba_backend import numba_available
from .reference import score_loop

__all__ = [
    "METHODS",
    "SuperpixelScores",
    "abc_class_weights",
    "class_prior_from_dominant",
    "classbal_scores",
    "expansion_mask",
    "numba_available",
    "runs_on_host",
    "score_loop",
    "score_superpixels",
]
