"""audit: what an auditor takes away from a review, an error rate with its interval, the
errata and a report.

The ranked queries are not a random sample, so their hit rate says nothing about the regions
never asked. A ranking with ``estimate_share`` also asks about regions drawn at random,
stratified by score, from its *frame* (every candidate region of the finest level asked that
its ranked queries do not cover); once they are answered, :func:`audit` estimates, with the
stratified estimator of :mod:`alc_fiftyone.core.estimation`, how many pixels (and regions)
of the frame an answer would still change. The ranked answers are known exactly: they are
outside the frame of their round and counted as corrections. docs/method.md, "What remains
wrong", states the design and its limits.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.estimation import remaining_total
from ..errors import ALCError
from ..store import db
from ..store.files import read_segmentation
from ..store.info import alc_info
from .queries import ANSWERED, attr, queries_field_of

if TYPE_CHECKING:
    import pandas as pd
    from fiftyone.core.collections import SampleCollection

CORRECTION_COLUMNS = [
    "sample_id",
    "filepath",
    "query_id",
    "x",
    "y",
    "width",
    "height",
    "pixels",
    "class_before",
    "class_after",
    "reviewer",
    "answered_at",
    "purpose",
    "round",
    "rank",
    "level",
    "score",
]


@dataclass
class AuditReport:
    """What :func:`audit` found. ``error_rate`` / ``error_rate_before``:
    ``{"pixels": (estimate, low, high), "regions": (...)}`` as shares (95% intervals), None
    where no answered random query allows an estimate; ``by_class``: the pixel share per class
    of the labels now (class = the class a region held when it was asked); ``corrections``:
    one row per correcting answer; ``hit_rate``: the answered queries with their rank and
    whether they corrected."""

    dataset: str
    label_field: str
    queries_field: str
    revised_field: str
    round: int | None
    error_rate: dict | None
    error_rate_before: dict | None
    by_class: dict
    corrections: pd.DataFrame
    hit_rate: pd.DataFrame
    counts: dict
    sample: dict | None = None  # the random sample's record (frame, strata)
    auxiliary: str = "score"  # what the pixel estimate is a ratio to (audit's ``auxiliary``)
    notes: list[str] = field(default_factory=list)
    samples: object = field(default=None, repr=False)  # the collection audited (pictures)

    def summary(self) -> dict:
        """The report's numbers as plain JSON-able values (without the tables)."""
        return {
            "dataset": self.dataset,
            "label_field": self.label_field,
            "queries_field": self.queries_field,
            "revised_field": self.revised_field,
            "round": self.round,
            "error_rate": self.error_rate,
            "error_rate_before": self.error_rate_before,
            "by_class": self.by_class,
            "counts": self.counts,
            "sample": self.sample,
            "auxiliary": self.auxiliary,
            "notes": self.notes,
        }

    def to_json(self, path) -> str:
        """Write the numbers and the corrections table as JSON; returns the path."""
        data = self.summary()
        rows = self.corrections.to_dict(orient="records")
        for r in rows:
            r["answered_at"] = _iso(r.get("answered_at"))
        data["corrections"] = rows
        Path(path).write_text(json.dumps(data, indent=2, default=_jsonable))
        return str(path)

    def to_html(self, path) -> str:
        """Write a self-contained HTML report (no file or network it needs besides itself):
        the estimates with their intervals, the corrections by class pair, the hit rate by
        rank, the corrections table. Returns the path."""
        Path(path).write_text(render_html(self), encoding="utf-8")
        return str(path)

    def standing(self) -> str:
        """One line: how many answers corrected, and the share still to fix."""
        c = self.counts
        text = f"{c['answered']} answers corrected {c['corrected']}"
        if self.error_rate is not None:
            e, lo, hi = self.error_rate["pixels"]
            text += (
                f"; about {100 * e:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}%) of the labelled "
                "pixels are still to fix"
            )
        return text


def audit(
    samples: SampleCollection,
    label_field: str | None = None,
    queries_field: str | None = None,
    revised_field: str | None = None,
    auxiliary: str | None = None,
) -> AuditReport:
    """The error rate still in the labels, with a 95% interval, and the errata of a review.

    Parameters
    ----------
    samples
        The dataset audited. A view lists the corrections of its samples only; the error
        estimate is always of the collection that was ranked (its frame and strata).
    label_field
        The labels under review (default: the one the queries were ranked for).
    queries_field
        The queries (default: the field of the latest ranking, a reviewer's ``alc_queries``;
        pass ``"alc_sim_queries"`` for a simulation's).
    revised_field
        The corrected labels (default: the one the queries' rounds wrote).
    auxiliary
        What the estimate of the pixels still wrong is a ratio to, known for every region
        of the frame: ``"pixels"`` (each stratum's ratio of changed pixels to region
        pixels) or ``"score"`` (the combined ratio to the acquisition's score; sim's score
        is the pixels it expects an answer to fix). Default :data:`AUXILIARY`, chosen by
        measurement (BENCHMARKS.md, "Audit quality").

    Returns
    -------
    AuditReport
        ``error_rate`` (the labels now) and ``error_rate_before`` (before any answer), as
        ``{"pixels": (estimate, low, high), "regions": (...)}``, estimated from the answered
        random queries of the latest round that has them (``rank_superpixels(...,
        estimate_share=...)``; None without such queries), ``by_class``, ``corrections`` (a
        pandas DataFrame), ``hit_rate``, ``counts``, ``to_json(path)``, ``to_html(path)``.
    """
    import pandas as pd

    auxiliary = _check_auxiliary(auxiliary)
    samples = db.patches_source(samples)
    dataset = db.dataset_of(samples)
    db.reload_dataset(dataset)
    if queries_field is None:
        queries_field = queries_field_of(dataset)
    rounds = _rounds_of(dataset, queries_field)
    if not samples.has_field(queries_field) or not rounds:
        raise ALCError(
            f"dataset {dataset.name!r} has no ranking rounds in {queries_field!r}: nothing to "
            "audit (run alc.rank_superpixels, with estimate_share > 0 for an error estimate)"
        )
    label_field = label_field or rounds[-1].get("label_field")
    revised_field = revised_field or rounds[-1].get("revised_field")
    if not samples.has_field(label_field):
        raise ALCError(f"dataset {dataset.name!r} has no label field {label_field!r}")

    rows, answered = [], []
    ids, paths, dets = samples.values(["id", "filepath", f"{queries_field}.detections"])
    for sid, path, ds in zip(ids, paths, dets):
        for d in ds or []:
            status = attr(d, "status")
            if status not in ANSWERED:
                continue
            changed = int(attr(d, "pixels_changed") or 0)
            answered.append(
                {
                    "round": attr(d, "round"),
                    "rank": attr(d, "rank"),
                    "purpose": attr(d, "purpose", "ranked"),
                    "stratum": attr(d, "stratum"),
                    "class_before": d.label,
                    "pixels": changed,
                    "size": int(attr(d, "num_pixels") or 0),
                    "score": float(attr(d, "score") or 0.0),
                    "corrected": status == "corrected",
                }
            )
            if status == "corrected":
                x0, y0, w, h = attr(d, "bbox_px") or (None,) * 4
                rows.append(
                    {
                        "sample_id": sid,
                        "filepath": path,
                        "query_id": d.id,
                        "x": x0,
                        "y": y0,
                        "width": w,
                        "height": h,
                        "pixels": changed,
                        "class_before": d.label,
                        "class_after": attr(d, "answer"),
                        "reviewer": attr(d, "answered_by"),
                        "answered_at": attr(d, "answered_at"),
                        "purpose": attr(d, "purpose", "ranked"),
                        "round": attr(d, "round"),
                        "rank": attr(d, "rank"),
                        "level": attr(d, "level", 0),
                        "score": attr(d, "score"),
                    }
                )
    corrections = pd.DataFrame(rows, columns=CORRECTION_COLUMNS)
    hit = pd.DataFrame(
        answered,
        columns=[
            "round",
            "rank",
            "purpose",
            "stratum",
            "class_before",
            "pixels",
            "size",
            "score",
            "corrected",
        ],
    )
    changed_pixels = _changed_pixels(samples, label_field, revised_field)
    counts = {
        "answered": len(answered),
        "corrected": len(rows),
        "answered_ranked": int((hit["purpose"] != "estimate").sum()) if len(hit) else 0,
        "answered_estimate": int((hit["purpose"] == "estimate").sum()) if len(hit) else 0,
        "pixels_changed": changed_pixels,
        "rounds": len(rounds),
    }
    report = AuditReport(
        samples=samples,
        dataset=dataset.name,
        label_field=label_field,
        queries_field=queries_field,
        revised_field=revised_field,
        round=None,
        error_rate=None,
        error_rate_before=None,
        by_class={},
        corrections=corrections,
        hit_rate=hit,
        counts=counts,
        auxiliary=auxiliary,
    )
    sampled = [r for r in rounds if r.get("estimate")]
    if not sampled:
        report.notes.append(
            "no round drew random queries (rank_superpixels(..., estimate_share=0.1)): the "
            "error still in the labels cannot be estimated; the corrections are listed"
        )
        return report
    rec = sampled[-1]
    report.round, report.sample = rec["round"], rec["estimate"]
    if rec is not rounds[-1]:
        report.notes.append(
            f"the estimate is of round {rec['round']}, the latest with random queries; the "
            "answers of later rounds are not reflected (the estimate then counts errors "
            "they fixed as still there)"
        )
    _estimate(report, hit, rec, changed_pixels, auxiliary)
    return report


#: what the estimate of the pixels still wrong is a ratio to (:func:`audit`'s ``auxiliary``)
AUXILIARY = "score"
AUXILIARIES = ("pixels", "score")


def _check_auxiliary(auxiliary) -> str:
    if auxiliary is None:
        return AUXILIARY
    if auxiliary not in AUXILIARIES:
        raise ValueError(f"auxiliary must be one of {', '.join(AUXILIARIES)}, got {auxiliary!r}")
    return auxiliary


#: the answers the panel's standing line looks back on (:func:`standing`)
STANDING_LAST = 50


def standing(
    samples: SampleCollection, queries_field: str | None = None, last: int = STANDING_LAST
) -> dict:
    """Where a review stands, cheaply enough for the review panel to show after an answer
    (one aggregation over the queries, no mask read): how many of the latest ``last``
    answers corrected a label, and the share of the labelled pixels still to fix as
    :func:`audit` estimates it (``error_rate["pixels"]``, from the answered random queries of
    the latest round that drew them).

    Parameters
    ----------
    samples
        The dataset or view whose answers are counted (the estimate is always of the
        collection that was ranked).
    queries_field
        The queries (default: the field of the latest ranking).
    last
        How many of the latest answers (by ``answered_at``) to count.

    Returns
    -------
    dict
        ``last`` (answers counted), ``corrected`` (of them), ``answered`` (in all),
        ``error_rate`` (``(estimate, low, high)`` shares or None), ``round`` (of the
        estimate, or None), ``latest_round`` and ``line``, the sentence the panel shows
        ("the last 50 answers corrected 6; about 2.1% (1.6-2.7%) of the labelled pixels are
        still to fix").
    """
    import pandas as pd

    samples = db.sample_level(db.patches_source(samples))
    dataset = db.dataset_of(samples)
    if queries_field is None:
        queries_field = queries_field_of(dataset)
    rounds = _rounds_of(dataset, queries_field)
    out = {
        "last": 0,
        "corrected": 0,
        "answered": 0,
        "error_rate": None,
        "round": None,
        "latest_round": rounds[-1].get("round") if rounds else None,
        "line": "",
    }
    if not samples.has_field(queries_field):
        return out
    q = f"${queries_field}.detections"
    answered = list(ANSWERED)
    rows = db.aggregate(
        samples,
        [
            # only the samples holding an answer (the status is indexed), only their answers
            {"$match": {f"{queries_field}.detections.status": {"$in": answered}}},
            {
                "$project": {
                    "q": {
                        "$filter": {
                            "input": q,
                            "as": "d",
                            "cond": {"$in": ["$$d.status", answered]},
                        }
                    }
                }
            },
            {"$unwind": "$q"},
            {
                "$project": {
                    "_id": 0,
                    "round": "$q.round",
                    "purpose": {"$ifNull": ["$q.purpose", "ranked"]},
                    "stratum": "$q.stratum",
                    "pixels": {"$ifNull": ["$q.pixels_changed", 0]},
                    "size": {"$ifNull": ["$q.num_pixels", 0]},
                    "score": {"$ifNull": ["$q.score", 0.0]},
                    "corrected": {"$eq": ["$q.status", "corrected"]},
                    "at": "$q.answered_at",
                }
            },
        ],
    )
    cols = ["round", "purpose", "stratum", "pixels", "size", "score", "corrected", "at"]
    hit = pd.DataFrame(rows, columns=cols)
    out["answered"] = len(hit)
    if len(hit):
        order = sorted(range(len(rows)), key=lambda i: _sort_time(rows[i].get("at")))
        latest = hit.iloc[order[-max(1, int(last)) :]]
        out["last"], out["corrected"] = len(latest), int(latest["corrected"].sum())
    parts = []
    if out["last"]:
        n = out["last"]
        said = f"{n} answer{'s' if n != 1 else ''} corrected {out['corrected']}"
        parts.append(f"the last {said}" if n == last else said)
    sampled = [r for r in rounds if r.get("estimate")]
    if sampled:
        rec = sampled[-1]
        est = rec["estimate"]
        labelled = float(est.get("labelled_pixels") or 0)
        _, pixels, _, _ = _remaining(hit, rec, AUXILIARY)
        if pixels is not None and labelled > 0:
            e, lo, hi = pixels.scaled(labelled)
            out["error_rate"], out["round"] = (e, lo, hi), rec["round"]
            text = (
                f"about {100 * e:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}%) of the labelled pixels "
                "are still to fix"
            )
            if rec is not rounds[-1]:
                text += f" (round {rec['round']}'s estimate)"
            parts.append(text)
        else:
            parts.append("the error left is estimated once its random queries are answered")
    line = "; ".join(parts)
    out["line"] = line[:1].upper() + line[1:] if line else ""
    return out


def _rounds_of(dataset, queries_field: str) -> list[dict]:
    """The ranking rounds recorded for ``queries_field``, oldest first."""
    return [
        r
        for r in (alc_info(dataset).get("rounds") or [])
        if r.get("queries_field") == queries_field
    ]


def _sort_time(value) -> float:
    """A sort key of an ``answered_at`` (datetime or ISO text; missing first)."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def _remaining(hit, rec: dict, auxiliary: str = AUXILIARY):
    """The estimates of round ``rec``'s frame from its answered random queries in ``hit``:
    ``(answered random queries, pixels Estimate, regions Estimate, of)``, the estimates None
    when none is answered; ``of(values, upper)`` estimates another value of those queries
    (a class's pixels) with the same strata and auxiliary."""
    est = rec["estimate"]
    strata = est["strata"]
    sizes = np.array([s["regions"] for s in strata], dtype=np.int64)
    mine = hit[(hit["purpose"] == "estimate") & (hit["round"] == rec["round"])]
    if len(mine) == 0:
        return mine, None, None, None
    h = mine["stratum"].to_numpy(dtype=np.int64)
    pix = mine["pixels"].to_numpy(dtype=np.float64)
    if auxiliary == "score" and all("score_total" in s for s in strata):
        # the acquisition's score (sim: the pixels it expects an answer to fix) predicts
        # what an answer changes: the combined ratio to it (docs/method.md, "What remains
        # wrong"); rounds recorded before the score totals fall back to the pixels
        ratio = {
            "aux": mine["score"].to_numpy(dtype=np.float64),
            "stratum_aux": np.array([s["score_total"] for s in strata], dtype=np.float64),
            "combined": True,
        }
    else:
        ratio = {
            "aux": mine["size"].to_numpy(dtype=np.float64),
            "stratum_aux": np.array([s["pixels"] for s in strata], dtype=np.float64),
        }

    def of(values: np.ndarray, upper: float):
        return remaining_total(sizes, h, values, upper=upper, **ratio)

    pixels = of(pix, float(est["frame_pixels"]))
    wrong = (pix > 0).astype(np.float64)
    regions = remaining_total(sizes, h, wrong, upper=float(est["frame_regions"]))
    return mine, pixels, regions, of


def _estimate(report: AuditReport, hit, rec: dict, changed_pixels: int, auxiliary) -> None:
    est = rec["estimate"]
    mine, pixels, regions, of = _remaining(hit, rec, auxiliary)
    report.counts["estimate_drawn"] = int(est["num_queries"])
    report.counts["estimate_answered"] = len(mine)
    if len(mine) < est["num_queries"]:
        report.notes.append(
            f"{est['num_queries'] - len(mine)} of the {est['num_queries']} random queries of "
            f"round {rec['round']} are not answered: the answered ones stand for their stratum"
        )
    if pixels is None:
        report.notes.append("no random query is answered yet: no estimate")
        return
    pix = mine["pixels"].to_numpy(dtype=np.float64)
    labelled = float(est.get("labelled_pixels") or 0)
    frame_regions = float(est["frame_regions"])
    report.error_rate = {
        "pixels": pixels.scaled(labelled),
        "regions": regions.scaled(frame_regions),
    }
    answered = report.counts["answered"]
    report.error_rate_before = {
        "pixels": pixels.scaled(labelled, offset=changed_pixels),
        "regions": regions.scaled(frame_regions + answered, offset=report.counts["corrected"]),
    }
    by_class = {}
    for name, n in (est.get("labelled_pixels_by_class") or {}).items():
        ys = np.where(mine["class_before"].to_numpy() == name, pix, 0.0)
        # at most every pixel of the class (the rule of three is of the whole frame)
        by_class[name] = of(ys, float(n)).scaled(float(n))
    report.by_class = by_class


def _changed_pixels(samples, label_field: str, revised_field: str | None) -> int:
    """Pixels the answers changed: where the revised labels differ from the labels under
    review (each pixel once, whatever answers wrote it)."""
    if not revised_field or not samples.has_field(revised_field):
        return 0
    total = 0
    for sample in samples.exists(revised_field).select_fields([label_field, revised_field]):
        a = read_segmentation(sample, label_field)
        b = read_segmentation(sample, revised_field)
        if a.shape == b.shape:
            total += int((a != b).sum())
    return total


# --- the HTML report -------------------------------------------------------------------------


def _fmt(t) -> str:
    if t is None or any(v is None or not np.isfinite(v) for v in t):
        return "n/a"
    e, lo, hi = t
    return f"{100 * e:.2f}% ({100 * lo:.2f}&ndash;{100 * hi:.2f}%)"


def _hit_rate_png(hit) -> str | None:
    """The hit rate by rank (corrected share of the answered ranked queries in bins of
    rank, one line per round), the random queries' hit rate as a line: base64 PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ranked = hit[hit["purpose"] != "estimate"]
    if not len(ranked):
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for rnd, part in ranked.groupby("round"):
        part = part.sort_values("rank")
        bins = max(1, min(10, len(part) // 5))
        chunks = np.array_split(np.arange(len(part)), bins)
        x = [float(part["rank"].iloc[c].mean()) for c in chunks]
        y = [100 * float(part["corrected"].iloc[c].mean()) for c in chunks]
        ax.plot(x, y, marker="o", label=f"round {rnd}")
    est = hit[hit["purpose"] == "estimate"]
    if len(est):
        ax.axhline(100 * float(est["corrected"].mean()), color="grey", ls="--", label="random")
    ax.set_xlabel("rank in its round")
    ax.set_ylabel("answers that corrected (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(report: AuditReport) -> str:
    """The report as one HTML page (the plot inline as a base64 PNG)."""
    import pandas as pd

    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>Label audit: {esc(report.dataset)}</title>",
        (
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
            "</style></head><body>"
        ),
        f"<h1>Label audit: {esc(report.dataset)}</h1>",
        (
            f"<p>Labels <code>{esc(str(report.label_field))}</code>, queries "
            f"<code>{esc(report.queries_field)}</code>, corrected labels "
            f"<code>{esc(str(report.revised_field))}</code>; generated "
            f"{esc(datetime.now().isoformat(timespec='seconds'))}.</p>"
        ),
        "<h2>Error rate</h2>",
    ]
    if report.error_rate is None:
        parts.append("<p>No estimate: no answered random queries.</p>")
    else:
        parts.append(
            "<table id='error-rate'><tr><th></th><th>pixels</th><th>regions</th></tr>"
            f"<tr><td>labels now</td><td>{_fmt(report.error_rate['pixels'])}</td>"
            f"<td>{_fmt(report.error_rate['regions'])}</td></tr>"
            f"<tr><td>labels before any answer</td>"
            f"<td>{_fmt(report.error_rate_before['pixels'])}</td>"
            f"<td>{_fmt(report.error_rate_before['regions'])}</td></tr></table>"
            "<p>Share of the labelled pixels (and of the regions of the frame) that an answer "
            "would still change, estimated from the random queries of round "
            f"{report.round} (stratified by score; the pixels by the "
            + (
                "combined ratio to the ranking's score"
                if report.auxiliary == "score"
                else "ratio to the regions' pixels in each stratum"
            )
            + "), with 95% intervals.</p>"
        )
        if report.by_class:
            parts.append("<h3>By class (labels now)</h3><table id='by-class'>")
            parts.append("<tr><th>class</th><th>pixels still wrong</th></tr>")
            for name, t in report.by_class.items():
                parts.append(f"<tr><td>{esc(name)}</td><td>{_fmt(t)}</td></tr>")
            parts.append("</table>")
    c = report.counts
    parts.append(
        f"<p>{c['answered']} answers, {c['corrected']} corrected, {c['pixels_changed']} "
        "pixels changed.</p>"
    )
    for note in report.notes:
        parts.append(f"<p><em>{esc(note)}</em></p>")
    parts.append("<h2>Corrections by class</h2>")
    corr = report.corrections
    if len(corr):
        table = pd.crosstab(corr["class_before"], corr["class_after"])
        parts.append(table.to_html(table_id="confusion"))
        parts.append("<p>Rows: the class before, columns: the class an answer gave.</p>")
    else:
        parts.append("<p>No corrections.</p>")
    parts.append("<h2>Hit rate by rank</h2>")
    png = _hit_rate_png(report.hit_rate)
    if png:
        parts.append(
            f"<img id='hit-rate' alt='hit rate by rank' src='data:image/png;base64,{png}'>"
            "<p>When the ranked answers correct no more often than the random ones, the "
            "ranking has little left to find.</p>"
        )
    else:
        parts.append("<p>No ranked answers.</p>")
    pictures = _before_after(report)
    if pictures:
        parts.append("<h2>Most corrected images</h2>")
        parts.append("<p>Each image with its labels before any answer and after.</p>")
        for path, changed, png in pictures:
            parts.append(
                f"<figure><img class='before-after' alt='before and after' "
                f"src='data:image/png;base64,{png}'><figcaption>{esc(str(path))}: "
                f"{changed} pixels corrected</figcaption></figure>"
            )
    parts.append(f"<h2>Corrections ({len(corr)})</h2>")
    shown = corr.head(500).copy()
    if len(shown):
        shown["answered_at"] = shown["answered_at"].map(_iso)
    parts.append(shown.to_html(table_id="corrections", index=False, escape=True))
    if len(corr) > 500:
        parts.append("<p>The first 500; the JSON report has them all.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _before_after(report: AuditReport, most: int = 4, width: int = 240) -> list:
    """(filepath, pixels corrected, base64 PNG of image | before | after) of the ``most``
    images with the most corrected pixels; [] when the collection is not at hand."""
    from PIL import Image

    from ..store.fields import class_table
    from ..store.files import read_image
    from .render import class_colors

    corr = report.corrections
    if report.samples is None or not len(corr):
        return []
    top = corr.groupby("sample_id")["pixels"].sum().sort_values(ascending=False).head(most)
    _, ignore, num_classes = class_table(db.dataset_of(report.samples), report.label_field)
    colors = class_colors(num_classes)
    out = []
    for sample in report.samples.select(list(top.index), ordered=True):
        try:
            image = read_image(sample)
            before = read_segmentation(sample, report.label_field)
            after = read_segmentation(sample, report.revised_field)
        except ALCError:
            continue
        if not (image.shape[:2] == before.shape == after.shape):
            continue

        def paint(labels, image=image):
            rgb = image.astype(np.float64).copy()
            known = (labels < num_classes) & (labels != (ignore if ignore is not None else -1))
            rgb[known] = 0.45 * rgb[known] + 0.55 * colors[labels[known].astype(int)]
            return rgb.astype(np.uint8)

        row = np.concatenate([image, paint(before), paint(after)], axis=1)
        pic = Image.fromarray(row)
        h = max(1, round(pic.height * 3 * width / pic.width))
        pic = pic.resize((3 * width, h))
        buf = io.BytesIO()
        pic.save(buf, format="PNG")
        out.append(
            (
                sample.filepath,
                int(top[sample.id]),
                base64.b64encode(buf.getvalue()).decode("ascii"),
            )
        )
    return out


def _iso(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
