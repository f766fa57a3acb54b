"""The review panel: answer the correction queries, one key or click each.

Everything real is in ``alc_fiftyone`` (``alc.next_query`` claims the next query,
``alc.answer / skip / split_query / undo`` write at once, ``alc.render_query`` draws the
picture; the few helpers beyond the public API come from ``alc_fiftyone.review``, the panel's
one internal module).

Each browser tab is its own reviewer. FiftyOne keeps a panel's *state* in the App session's
spaces, which every tab of one App server shares (the App writes it into the spaces it sends
to the server and takes it from the spaces the server sends back), so the panel keeps nothing
of a reviewer there. The card (``panels/keys.js``, component ``AlcReview``) holds its tab's
identity: a tab id and the reviewer's name (``sessionStorage``: a reload of the tab keeps
them, another tab has its own), and sends them with every event (param ``card``: ``tab``,
``reviewer``, ``shown``: the query on screen, ``view_key``, ``whole``, ``req``). The server
answers into the panel *data*, which is the tab's own: one object (``review``) with the
question, the picture, the answers and their keys, the progress, the message and the name,
so they always belong to the same query. What a tab holds lives in the database: the claim
(``claimed_by`` = the tab's name), so closing the browser loses nothing and reopening
continues with the query the reviewer still holds.

Every answer the card sends carries the id of the query it shows; it is written only while
the tab's reviewer holds that query (one atomic update); otherwise the panel says why and
shows the reviewer's next query, so an answer can only land on the region the reviewer saw.
Events the App sends without a card (a view or dataset change, an operator's result) ask the
card to send itself again (``review.resync``), since only the card knows its tab.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
import zlib
from pathlib import Path

import fiftyone.operators as foo
from fiftyone.operators import types

NUM_SUGGESTION_BUTTONS = 9
# how long the panel's process may serve the queue and the progress counts from its caches
# (review.next_query / review_progress ``max_age``): changes made through this process show
# at once, those of other processes (a script, another App server) within this time
CACHE_SECONDS = 60.0
# the card's picture: a frame of this shape (panels/keys.js: aspect-ratio 3 / 2) and size
FRAME_ASPECT = 1.5
PICTURE_SIZE = 720
_SEQ = itertools.count(1)  # every card the server sends is numbered (the card's "new card")


def _alc():
    import alc_fiftyone as alc

    return alc


def _view_key(ctx) -> str:
    """A short fingerprint of the view the panel works on (its dataset and pipeline, as the
    review caches tell views apart)."""
    from alc_fiftyone.review import view_key

    key = view_key(ctx.view)
    return f"{zlib.crc32(key.encode()):08x}-{len(key)}"


def _rounds(dataset) -> list[dict]:
    return ((dataset.info or {}).get("alc") or {}).get("rounds") or []


def queries_field_of(dataset) -> str:
    """The queries field of the latest ranking round (``alc_queries`` by default)."""
    from alc_fiftyone.review import queries_field_of as field_of

    return field_of(dataset)


def last_round(dataset, queries_field: str | None = None) -> dict:
    """The latest ranking round (of ``queries_field`` if given): its label, superpixel,
    revised and queries fields."""
    rounds = [
        r
        for r in _rounds(dataset)
        if queries_field is None or r.get("queries_field") in (None, queries_field)
    ]
    return dict(rounds[-1]) if rounds else {}


def _count(n) -> str:
    return f"{int(n or 0):,}"


def card_of(ctx) -> dict:
    """What the card sent of its tab (param ``card``): ``tab``, ``reviewer``, ``shown`` (the
    query on screen: ``id``, ``sample_id``), ``view_key``, ``whole`` and ``req``; {} for an
    event the App sent without it."""
    card = ctx.params.get("card")
    return card if isinstance(card, dict) else {}


def default_reviewer(ctx, tab) -> str:
    """The name of a tab whose reviewer has not given one: the App's user where it has one,
    else ``$ALC_REVIEWER`` (or ``reviewer``) and the end of the tab's id, so that two tabs
    are two reviewers until they are named."""
    user = getattr(ctx, "user", None)
    name = getattr(user, "email", None) or getattr(user, "name", None)
    if name:
        return str(name)
    base = os.environ.get("ALC_REVIEWER") or "reviewer"
    suffix = re.sub(r"[^0-9A-Za-z]", "", str(tab or ""))[-6:] or "sdk"
    return f"{base}-{suffix}"


class ReviewPanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="alc_review",
            label="ALC: Review",
            icon="fact_check",
            surfaces="grid",
            help_markdown=(
                "Answer the correction queries: is the outlined region (a star inside it) of "
                "the class named? **Enter**: yes; **1-9**: no, it is "
                "that class; **Another class**: any class, picked from the list; **S**: skip; "
                "**U**: undo; **W**: whole image. Answers are saved at once."
            ),
        )

    # --- helpers ---------------------------------------------------------------------------

    def _reviewer(self, ctx) -> str:
        """The name of the tab that sent the event (its card's), or its default name."""
        from alc_fiftyone.review import reviewer_name

        card = card_of(ctx)
        try:
            name = reviewer_name(card.get("reviewer"))
        except _alc().ALCError:
            name = None  # not a name this panel accepts (the card never adopts one)
        return name or default_reviewer(ctx, card.get("tab"))

    def _field(self, ctx) -> str:
        return queries_field_of(ctx.dataset)

    def _shown(self, ctx) -> dict | None:
        """The query the tab's card shows (``id``, ``sample_id``), as it says; every use
        checks it against the database (a claim, a query look-up)."""
        shown = card_of(ctx).get("shown")
        if isinstance(shown, dict) and isinstance(shown.get("id"), str):
            return {"id": shown["id"], "sample_id": shown.get("sample_id")}
        return None

    def _shown_id(self, ctx) -> str | None:
        return (self._shown(ctx) or {}).get("id")

    def _serve(
        self,
        ctx,
        skip_ids=(),
        query_id=None,
        message=None,
        level="info",
        user=None,
        whole=None,
        keep_message=False,
        skipped=None,
    ):
        """Claim and show the next query (or ``query_id``, when the tab's reviewer holds it or
        can claim it), with the progress, in the tab's card."""
        alc = _alc()
        field = self._field(ctx)
        card_in = card_of(ctx)
        user = user or self._reviewer(ctx)
        whole = bool(card_in.get("whole")) if whole is None else bool(whole)
        info = None
        try:
            if query_id is not None:
                sample_id = None
                shown = self._shown(ctx)
                if shown and shown["id"] == query_id:
                    sample_id = shown.get("sample_id")
                try:
                    if alc.claim(
                        ctx.dataset, query_id, user, queries_field=field, sample_id=sample_id
                    ):
                        info = alc.query_info(ctx.dataset, query_id, field, sample_id=sample_id)
                except alc.ALCError:
                    info = None  # not (or no longer) a query of this dataset: the next one
            if info is None:
                info = alc.next_query(
                    ctx.view, user, field, skip_ids=skip_ids, max_age=CACHE_SECONDS
                )
        except alc.ALCError as e:
            message, level, keep_message = str(e), "error", False
        card = None
        if info is not None:
            try:
                card = self._card_query(ctx, info, field, whole)
            except alc.ALCError as e:
                message, level, keep_message = f"cannot draw the query: {e}", "error", False
        progress = self._progress(ctx, user)
        lines = _progress_lines(progress, user)
        stand = _standing(ctx, field, progress)
        if stand:
            lines.append(stand)
        # key by key: what the card was asked to do meanwhile (``review.resync``) stays
        payload = {
            "seq": next(_SEQ),
            "req": card_in.get("req"),
            "view_key": _view_key(ctx),
            "query": card,
            "classes": card.pop("classes") if card else [],
            "progress": lines,
            "counts": progress,
            "message": message,
            "level": level,
            "keep_message": bool(keep_message),
            "reviewer": user,
            "max_name": _max_name(),
            "skipped_count": ((progress.get("total") or {}).get("skipped_by_user") or 0),
            "skipped": skipped,
        }
        ctx.panel.data.set({f"review.{k}": v for k, v in payload.items()})

    def _resync(self, ctx, why: str, **extra) -> None:
        """An event without the card (only the card knows its tab): ask it to send itself
        again (panels/keys.js answers with ``refresh``)."""
        ctx.panel.data.set("review.resync", {"token": next(_SEQ), "why": why, **extra})

    def _card_query(self, ctx, info: dict, field: str, whole: bool) -> dict:
        """What the card draws of a query: the question, the picture, the legend."""
        alc = _alc()
        from alc_fiftyone.review import (
            class_table,
            color_of,
            data_uri,
            get_query,
            hex_color,
            refresh_label,
        )

        sample, det = get_query(ctx.dataset, info["id"], field, info["sample_id"])
        # ask about the class the region holds now (an overlapping answer may have changed it)
        info.update(refresh_label(ctx.dataset, sample, det, field))
        png = alc.render_query(
            sample,
            det,
            ctx.dataset,
            display_size=PICTURE_SIZE,
            whole_image=whole,
            aspect=FRAME_ASPECT,
            legend=False,
        )
        names, ignore, num = class_table(ctx.dataset, info["label_field"])
        value_of = {n: v for v, n in names.items()}
        label = info["label"]
        suggestions = [s for s in info.get("suggestions") or [] if s != label]

        def entry(name, now=False):
            value = value_of.get(name, -1)
            return {"name": name, "color": hex_color(color_of(value, num, ignore)), "now": now}

        return {
            "id": info["id"],
            "sample_id": info["sample_id"],
            "label": label,
            "mix": _mix_text(info.get("label_mix")),
            "rank": info.get("rank"),
            "round": info.get("round"),
            "pixels": _count(info.get("num_pixels")),
            "suggestions": suggestions[:NUM_SUGGESTION_BUTTONS],
            "image": data_uri(png),
            "whole": whole,
            "legend": [entry(label, True)] + [entry(s) for s in suggestions[:4]],
            "classes": [names[v] for v in sorted(names) if v < num or v == ignore],
        }

    def _progress(self, ctx, user) -> dict:
        try:
            return _alc().review_progress(ctx.view, self._field(ctx), user, max_age=CACHE_SECONDS)
        except _alc().ALCError as e:  # progress must never break the panel
            return {"error": str(e)}

    def _release(self, ctx, query_id, user=None) -> None:
        """Give the query ``query_id`` back, if the tab's reviewer holds it; the id comes from
        the card, so a query that is not (or no longer) in the dataset is simply not
        released."""
        alc = _alc()
        if not query_id:
            return
        try:
            alc.release(ctx.dataset, query_id, user or self._reviewer(ctx), self._field(ctx))
        except (alc.ALCError, KeyError, TypeError):
            pass

    def _in_view(self, ctx, query_id: str) -> bool:
        """Whether the view the panel works on holds query ``query_id`` (of the sample the
        card names): its sample, and the query among those the view's filters keep."""
        from alc_fiftyone.review import sample_level

        shown = self._shown(ctx) or {}
        sample_id = shown.get("sample_id")
        if not sample_id or ctx.view is None:
            return False
        try:
            view = sample_level(ctx.view).select(sample_id)
            ids = view.values(f"{self._field(ctx)}.detections.id", unwind=True)
        except Exception:  # noqa: BLE001 (an id from the browser that is no sample id)
            return False
        return query_id in ids

    def _on_screen(self, ctx):
        """The query an answer event is for, when it is the one the tab shows and its
        reviewer holds it (a claim that expired is renewed if nobody took it); otherwise the
        tab's query is shown again with the reason (or the next one), and None."""
        alc = _alc()
        shown = self._shown(ctx)
        qid = ctx.params.get("query_id")
        user = self._reviewer(ctx)
        if not shown or not qid or qid != shown["id"]:
            self._serve(
                ctx,
                query_id=(shown or {}).get("id"),
                message="Not saved: that answer was for a query no longer on screen. "
                "Here is the query you hold.",
                level="warning",
            )
            return None
        field = self._field(ctx)
        try:
            sid = shown.get("sample_id")
            if alc.claim(ctx.dataset, qid, user, queries_field=field, sample_id=sid):
                return alc.query_info(ctx.dataset, qid, field, sample_id=sid)
            info = alc.query_info(ctx.dataset, qid, field, sample_id=sid)
        except alc.ALCError as e:
            self._serve(ctx, skip_ids=[qid], message=f"Not saved: {e}", level="error")
            return None
        self._serve(
            ctx,
            skip_ids=[qid],
            message=f"Not saved: {_not_yours(info, user)}. Here is your next query.",
            level="warning",
        )
        return None

    # --- events ----------------------------------------------------------------------------

    def on_load(self, ctx):
        # the card sends itself when it appears (refresh, why "start"): only it knows its tab
        if _grid_defaults(ctx):
            # new App settings: the card asks for them (refresh, why "grid": they go to the
            # App session, which every tab and later visit of this App server shows), then
            # reloads its tab once, since thumbnails drawn meanwhile keep the App's colours;
            # the reviewer's name and claims survive a reload
            self._resync(ctx, "grid")

    def on_change_view(self, ctx):
        self._resync(ctx, "view")

    def on_change_dataset(self, ctx):
        self._resync(ctx, "dataset")

    def refresh(self, ctx):
        """The card sending itself: when it appears (``why`` "start"), when asked to
        (``review.resync``: a view or dataset change, an operator's result), or to redraw."""
        why = ctx.params.get("why")
        card = card_of(ctx)
        shown = self._shown_id(ctx)
        if why == "view":
            if shown and card.get("view_key") == _view_key(ctx):
                # the App sends the same view again (e.g. after a new field appears with the
                # first answer): keep the query and the message on screen
                return None
            # the App's view is the session's, so another tab can change it: the query on
            # screen stays while the new view holds it, else it is given back
            if shown and self._in_view(ctx, shown):
                return self._serve(ctx, query_id=shown, keep_message=True)
            self._release(ctx, shown)
            return self._serve(ctx, skip_ids=[shown] if shown else ())
        if why == "dataset":
            return self._serve(ctx)
        if why == "grid":
            return _apply_grid(ctx)
        if why == "notice":
            message = ctx.params.get("message")
            level = ctx.params.get("level") or "info"
            if ctx.params.get("serve") == "next":
                return self._serve(ctx, message=message, level=level)
            return self._serve(ctx, query_id=shown, message=message, level=level)
        return self._serve(ctx, query_id=shown, keep_message=why != "start")

    def answer(self, ctx):
        """The card's answer: ``query_id`` (the query it shows) and ``label`` (the class)."""
        alc = _alc()
        q = self._on_screen(ctx)
        if q is None:
            return
        label = ctx.params.get("label") or q["label"]
        user = self._reviewer(ctx)
        field = self._field(ctx)
        try:
            n = alc.answer(
                ctx.dataset, q["id"], label, user=user, queries_field=field, claimed_by=user
            )
        except alc.NotClaimedError as e:
            return self._serve(ctx, skip_ids=[q["id"]], message=f"Not saved: {e}", level="warning")
        except alc.ALCError as e:
            # e.g. the superpixels changed since ranking: give it back, say why
            self._release(ctx, q["id"], user)
            return self._serve(ctx, skip_ids=[q["id"]], message=f"Not saved: {e}", level="error")
        asked = ctx.params.get("asked") or q["label"]
        what = f"is {label}" if label == asked else f"{asked} \u2192 {label}"
        self._serve(
            ctx,
            message=f"Saved: rank {q.get('rank')} {what} ({_count(n)} px changed)",
            level="success",
        )

    def skip(self, ctx):
        alc = _alc()
        q = self._on_screen(ctx)
        if q is None:
            return
        user = self._reviewer(ctx)
        try:
            alc.skip(
                ctx.dataset, q["id"], user=user, queries_field=self._field(ctx), claimed_by=user
            )
            msg, level = f"Skipped rank {q.get('rank')} ({q['label']})", "info"
        except alc.ALCError as e:
            msg, level = str(e), "error"
        self._serve(ctx, skip_ids=[q["id"]], message=msg, level=level)

    def mixed(self, ctx):
        """The card's "Mixed": the region holds several classes; it is split into pieces that
        are this reviewer's next queries, the first of them shown now."""
        alc = _alc()
        q = self._on_screen(ctx)
        if q is None:
            return
        user = self._reviewer(ctx)
        try:
            pieces = alc.split_query(
                ctx.dataset, q["id"], user, queries_field=self._field(ctx), claimed_by=user
            )
        except alc.ALCError as e:
            return self._serve(ctx, query_id=q["id"], message=f"Not split: {e}", level="error")
        self._serve(
            ctx,
            query_id=pieces[0] if pieces else None,
            message=f"Split rank {q.get('rank')} into {len(pieces)} pieces: here is the first",
        )

    def list_skipped(self, ctx):
        """The reviewer's skipped queries, for the card's "Skipped" list."""
        alc = _alc()
        try:
            found = alc.skipped_queries(ctx.view, self._reviewer(ctx), self._field(ctx), 20)
        except alc.ALCError:
            found = []
        self._serve(
            ctx,
            query_id=self._shown_id(ctx),
            keep_message=True,
            skipped=[
                {"id": i["id"], "rank": i.get("rank"), "label": i.get("label")} for i in found
            ],
        )

    def revisit(self, ctx):
        """A skipped query picked from the list: reopened for this reviewer and shown."""
        alc = _alc()
        qid = ctx.params.get("query_id")
        user = self._reviewer(ctx)
        shown = self._shown_id(ctx)
        try:
            if not qid or not alc.unskip(ctx.dataset, qid, user, self._field(ctx)):
                return self._serve(
                    ctx,
                    query_id=shown,
                    message="That query is no longer skipped",
                    level="warning",
                )
        except alc.ALCError as e:
            return self._serve(ctx, query_id=shown, message=str(e), level="error")
        if shown and shown != qid:
            self._release(ctx, shown, user)
        self._serve(ctx, query_id=qid, message="A skipped query, back to answer")

    def undo(self, ctx):
        """Takes back the reviewer's last action of any kind (answer, skip, split) and shows
        that query again."""
        alc = _alc()
        user = self._reviewer(ctx)
        field = self._field(ctx)
        shown = self._shown_id(ctx)
        try:
            from alc_fiftyone.review import get_query, last_action

            last = last_action(ctx.dataset, field, user)
            if last is None:
                raise alc.ALCError("you have nothing to undo")
            status = get_query(ctx.dataset, last, field)[1].get_field("status")
            n = alc.undo(ctx.dataset, last, user=user, queries_field=field)
        except alc.ALCError as e:
            return self._serve(ctx, query_id=shown, message=str(e), level="warning")
        if shown and shown != last:
            self._release(ctx, shown, user)
        # the query taken back is shown again, to be answered anew
        what = {
            "skipped": "the skip of this query",
            "split": "the split of this query into pieces",
        }.get(status, f"{_count(n)} px restored")
        self._serve(ctx, query_id=last, message=f"Undone: {what}")

    def toggle_whole(self, ctx):
        whole = not bool(card_of(ctx).get("whole"))
        self._serve(ctx, query_id=self._shown_id(ctx), whole=whole, keep_message=True)

    def set_reviewer(self, ctx):
        """The name, sent by the card on Enter or when the field is left (never per key); the
        card takes it once the server accepted it (this response names it)."""
        from alc_fiftyone.review import reviewer_name

        alc = _alc()
        old = self._reviewer(ctx)
        shown = self._shown_id(ctx)
        try:
            name = reviewer_name(ctx.params.get("value") or "")
        except alc.ALCError as e:
            return self._serve(ctx, query_id=shown, message=f"Not renamed: {e}", level="error")
        if not name or name == old:
            return self._serve(ctx, query_id=shown, keep_message=True)
        self._release(ctx, shown, old)
        self._serve(ctx, user=name, message=f"Reviewing as {name}")

    def open_sample(self, ctx):
        shown = self._shown(ctx)
        if not shown:
            return
        from alc_fiftyone.review import get_query

        try:  # only a query of this dataset (the id comes from the browser)
            sample, det = get_query(ctx.dataset, shown["id"], self._field(ctx))
        except _alc().ALCError:
            return
        ctx.ops.set_selected_labels(
            [{"label_id": det.id, "sample_id": sample.id, "field": self._field(ctx)}]
        )
        ctx.ops.open_sample(id=sample.id)

    def show_queue(self, ctx):
        field = self._field(ctx)
        # the queries are what the grid then shows: make sure they are drawn
        ctx.ops.set_active_fields(fields=[field])
        ctx.ops.set_view(view=_alc().review_queue(ctx.dataset, field, None))

    def rank_again(self, ctx):
        # from the queue in the grid (a patches view) the ranking takes the images it was
        # made from: the form says how many, and the grid stays
        field = self._field(ctx)
        self._release(ctx, self._shown_id(ctx))
        rnd = last_round(ctx.dataset, field)
        params = {
            "label_field": rnd.get("label_field")
            or (ctx.dataset.info.get("alc") or {}).get("label_field"),
            "queries_field": field,
        }
        if rnd.get("superpixel_field"):
            params["superpixel_field"] = rnd["superpixel_field"]
        self._prompt(ctx, "rank_superpixels", params, self.ranked)

    def ranked(self, ctx):
        if self._result_error(ctx):
            return
        summary = (ctx.params.get("result") or {}).get("summary") or {}
        n = summary.get("num_queries")
        self._resync(
            ctx,
            "notice",
            message=f"Ranked round {summary.get('round', '?')}: "
            f"{_count(n) if n is not None else 'new'} queries",
            level="success",
            serve="next",
        )

    def save_version(self, ctx):
        rnd = last_round(ctx.dataset, self._field(ctx))
        params = {"name": f"{ctx.dataset.name}-revised"}
        # the corrections belong to the field that was ranked (not necessarily the one the
        # dataset records as its label field)
        for key in ("label_field", "revised_field"):
            if rnd.get(key):
                params[key] = rnd[key]
        self._prompt(ctx, "save_revised_version", params, self.saved)

    def saved(self, ctx):
        if self._result_error(ctx):
            return
        result = ctx.params.get("result") or {}
        summary = result.get("summary") or {}
        original = ctx.params.get("original_params") or {}
        failed = summary.get("failed") or []
        text = result.get("text") or (
            f"Saved the revised version as dataset '{summary.get('dataset')}' "
            f"({_count(summary.get('samples'))} samples; corrections in "
            f"'{original.get('label_field') or 'the label field'}')"
        )
        if failed:
            text += f"; {len(failed)} sample(s) kept their labels (unreadable masks)"
        text = text.replace("`", "'")  # the operator's words are markdown; the line is text
        self._resync(ctx, "notice", message=text, level="warning" if failed else "success")

    def export(self, ctx):
        rnd = last_round(ctx.dataset, self._field(ctx))
        params = {}
        if rnd.get("revised_field"):
            params["field"] = rnd["revised_field"]
        self._prompt(ctx, "export_masks", params, self.exported)

    def exported(self, ctx):
        if self._result_error(ctx):
            return
        result = ctx.params.get("result") or {}
        summary = result.get("summary") or {}
        n = summary.get("written", summary.get("num_written"))
        text = result.get("text") or (
            f"Exported {_count(n) if n is not None else 'the'} masks to "
            f"{summary.get('out_dir', 'the folder')}"
        )
        self._resync(ctx, "notice", message=text.replace("`", "'"), level="success")

    def report(self, ctx):
        """The auditor's report (operator ``audit_report``), prefilled with this panel's
        queries field and a file on the server."""
        out = Path(tempfile.gettempdir()) / f"{ctx.dataset.name}-audit.html"
        params = {"out": str(out), "queries_field": self._field(ctx)}
        self._prompt(ctx, "audit_report", params, self.reported)

    def reported(self, ctx):
        if self._result_error(ctx):
            return
        text = (ctx.params.get("result") or {}).get("text") or "Report written"
        self._resync(ctx, "notice", message=text.replace("`", "'"), level="success")

    def _prompt(self, ctx, operator: str, params: dict, on_success) -> None:
        """Open one of this plugin's operators prefilled with ``params``; its result comes
        back to ``on_success``, its failure to :meth:`failed`."""
        ctx.prompt(
            f"{_alc().PLUGIN_NAME}/{operator}",
            params=params,
            on_success=on_success,
            on_error=self.failed,
        )

    def _result_error(self, ctx) -> bool:
        """An operator run from the panel that refused (a user error comes back as its
        ``error`` output, one line): shown in the panel; True when there was one."""
        error = (ctx.params.get("result") or {}).get("error")
        if not error:
            return False
        self._resync(ctx, "notice", message=f"Not done: {_one_line(error)}", level="error")
        return True

    def failed(self, ctx):
        error = str(ctx.params.get("error") or "the operation failed")
        self._resync(ctx, "notice", message=_one_line(error), level="error")

    # --- layout ----------------------------------------------------------------------------

    def render(self, ctx):
        # one view: the card draws everything (panels/keys.js), its buttons wrap to any width
        panel = types.Object()
        uris = {
            name: self.method_to_uri(name)
            for name in (
                "refresh",
                "answer",
                "skip",
                "mixed",
                "list_skipped",
                "revisit",
                "undo",
                "set_reviewer",
                "toggle_whole",
                "open_sample",
                "show_queue",
                "rank_again",
                "save_version",
                "export",
                "report",
            )
        }
        panel.view("review", types.View(component="AlcReview", composite_view=True, **uris))
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1))


def _not_yours(info: dict, user: str) -> str:
    """Why the query ``info`` is not ``user``'s to answer now."""
    status = info.get("status")
    if status == "skipped":
        return "that query was skipped (maybe in another tab)"
    if status in ("confirmed", "corrected"):
        return "that query was already answered"
    if status == "claimed" and info.get("claimed_by") != user:
        return f"{info.get('claimed_by')} holds that query now (your claim had expired)"
    return f"that query is {status} now"


def _mix_text(mix) -> str | None:
    """``[[name, fraction], ...]`` (most first) as "Sky 99%, Pavement 1%"; None for one class."""
    if not mix or len(mix) < 2:
        return None
    parts = []
    for name, frac in mix[:4]:
        pct = 100 * float(frac)
        parts.append(f"{name} {'<1' if 0 < pct < 1 else round(pct)}%")
    return ", ".join(parts)


def _max_name() -> int:
    from alc_fiftyone.review import MAX_REVIEWER_NAME

    return MAX_REVIEWER_NAME


def _one_line(error: str) -> str:
    """The last meaningful line of an error (a traceback's message), to show in the panel."""
    lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "the operation failed"


# the standing line of a dataset's queries field, recomputed when the answers or the rounds
# counted by the progress change: {(dataset, field, view): (key, line)}
_STANDING: dict = {}


def _standing(ctx, field: str, progress: dict) -> str:
    """The progress card's last line: "The last 50 answers corrected 6; about 2.1%
    (1.6-2.7%) of the labelled pixels are still to fix" (``review.standing``); empty before
    any query or where there is nothing to say, and never an error (the card must be
    drawn)."""
    t = (progress or {}).get("total") or {}
    if "error" in (progress or {}) or not t.get("queries"):
        return ""
    where = (ctx.dataset.name, field, _view_key(ctx))
    key = (t.get("answered"), t.get("corrected"), progress.get("latest_round"))
    kept = _STANDING.get(where)
    if kept is not None and kept[0] == key:
        return kept[1]
    from alc_fiftyone.review import standing

    try:
        line = standing(ctx.view, field)["line"]
    except Exception:  # noqa: BLE001 (a line of the card: never break the panel)
        return kept[1] if kept else ""
    if len(_STANDING) > 64:
        _STANDING.clear()
    _STANDING[where] = (key, line)
    return line


def _progress_lines(p: dict, reviewer) -> list[str]:
    if not p or "error" in p:
        return [f"Progress unavailable: {p.get('error', 'no queries yet')}"] if p else []
    r, t = p.get("round") or {}, p.get("total") or {}
    if not t.get("queries"):
        return ["No queries yet: rank the superpixels first."]
    mine = t.get("answered_by_user")
    return [
        (
            f"Round {p.get('latest_round')}: {r.get('answered', 0)} answered / "
            f"{r.get('queued', 0)} queued, {r.get('skipped', 0)} skipped, "
            f"{_count(r.get('pixels_changed'))} px changed"
        ),
        f"Total: {t.get('answered', 0)} answered ({t.get('corrected', 0)} corrected) of "
        f"{t.get('queries', 0)}" + (f"; {reviewer}: {mine}" if reviewer else ""),
    ]


def _grid_defaults(ctx) -> bool:
    """The grid and the sample view as a reviewer needs them, unless the dataset says
    otherwise: the labels under review drawn and the queries hidden (they cover every
    thumbnail; the App's default shows every non-dense label field), and every label field's
    classes in the colours of the panel's picture (FiftyOne colours by field by default: one
    colour for every class). Stored as the dataset's App settings, for every browser and
    visit of a new App server (:func:`_apply_grid` gives them to the running one); True
    when they were new."""
    import fiftyone as fo

    from alc_fiftyone.errors import ALCError
    from alc_fiftyone.review import class_colors, class_table, hex_color

    dataset = ctx.dataset
    if dataset is None:
        return False
    config = dataset.app_config
    changed = False
    chosen = config.active_fields
    # an empty list of paths is the App's "nothing chosen": every other browser then shows
    # its own default, the queries on every thumbnail (an earlier panel stored that)
    if chosen is None or not (chosen.paths or chosen.exclude):
        hidden = {r["queries_field"] for r in _rounds(dataset) if r.get("queries_field")}
        hidden.add(queries_field_of(dataset))
        active = fo.DatasetAppConfig.default_active_fields(dataset)
        active.paths = [p for p in active.paths if p.split(".")[0] not in hidden]
        label_field = last_round(dataset).get("label_field") or (
            (dataset.info or {}).get("alc") or {}
        ).get("label_field")
        if label_field and dataset.has_field(label_field) and label_field not in active.paths:
            active.paths.insert(0, label_field)
        config.active_fields = active
        changed = True
    if config.color_scheme is None:
        fields = []
        for path in sorted(dataset.mask_targets or {}):
            try:
                names, ignore, num = class_table(dataset, path)
            except ALCError:
                continue
            colors = class_colors(num)
            targets = [
                {"intTarget": int(v), "color": hex_color(colors[v])} for v in names if v < num
            ]
            if ignore is not None:
                targets.append({"intTarget": int(ignore), "color": "#e0e0c0"})
            fields.append({"path": path, "maskTargetsColors": targets})
        if fields:
            config.color_scheme = fo.ColorScheme(color_by="value", fields=fields)
            changed = True
    if changed:
        dataset.save()
    return changed


def _apply_grid(ctx) -> None:
    """The dataset's App settings (those :func:`_grid_defaults` stored) given to the running
    App: its colour scheme (through the App, which keeps it in the session that every tab of
    this App server shows) and the fields this tab draws."""
    dataset = ctx.dataset
    if dataset is None:
        return
    config = dataset.app_config
    if config.color_scheme is not None:
        scheme = config.color_scheme
        fields = [dict(f) for f in scheme.fields or []]
        ctx.trigger("set_color_scheme", {"color_by": scheme.color_by, "fields": fields})
    if config.active_fields is not None and config.active_fields.paths:
        ctx.ops.set_active_fields(fields=list(config.active_fields.paths))
