"""The review panel: answer correction queries one click each.

Everything real is in ``alc_fiftyone`` (``alc.next_query`` claims the next query,
``alc.answer / undo / skip`` write at once, ``alc.render_query`` draws the picture; the few
helpers beyond the public API come from ``alc_fiftyone.review``, the panel's one internal
module); the panel keeps in its state only the reviewer's name and the query on screen, so
closing the browser loses nothing and reopening continues with the query the reviewer still
holds.
"""

from __future__ import annotations

import os
import zlib

import fiftyone.operators as foo
from fiftyone.operators import types

NUM_SUGGESTION_BUTTONS = 9
# how long the panel's process may serve the queue and the progress counts from its caches
# (review.next_query / review_progress ``max_age``): changes made through this process show
# at once, those of other processes (a script, another App server) within this time
CACHE_SECONDS = 60.0


def _alc():
    import alc_fiftyone as alc

    return alc


def _view_key(ctx) -> str:
    """A short fingerprint of the view the panel works on (its dataset and pipeline, as the
    review caches tell views apart)."""
    from alc_fiftyone.review import view_key

    key = view_key(ctx.view)
    return f"{zlib.crc32(key.encode()):08x}-{len(key)}"


def queries_field_of(dataset) -> str:
    """The queries field of the latest ranking round (``alc_queries`` by default)."""
    from alc_fiftyone.review import queries_field_of as field_of

    return field_of(dataset)


class ReviewPanel(foo.Panel):
    @property
    def config(self):
        return foo.PanelConfig(
            name="alc_review",
            label="ALC: Review",
            icon="fact_check",
            surfaces="grid",
            help_markdown=(
                "Answer the correction queries: is the outlined region (star: its "
                "representative pixel) of the class shown? Confirm, or pick the right class. "
                "Answers are saved at once; undo takes the last one back."
            ),
        )

    # --- helpers ---------------------------------------------------------------------------

    def _reviewer(self, ctx) -> str:
        name = ctx.panel.state.get("reviewer")
        if not name:
            user = getattr(ctx, "user", None)
            name = getattr(user, "email", None) or getattr(user, "name", None)
            if not name:
                base = os.environ.get("ALC_REVIEWER") or "reviewer"
                name = f"{base}-{(ctx.panel_id or 'sdk')[-6:]}"
            ctx.panel.state.set("reviewer", name)
        return name

    def _field(self, ctx) -> str:
        return ctx.panel.state.get("queries_field") or queries_field_of(ctx.dataset)

    def _serve(self, ctx, skip_ids=(), query_id=None, message=None, level="info"):
        """Claim and show the next query (or ``query_id``), refresh progress and picture."""
        alc = _alc()
        from alc_fiftyone.review import data_uri

        field = self._field(ctx)
        user = self._reviewer(ctx)
        info = None
        try:
            if query_id is not None and alc.claim(
                ctx.dataset, query_id, user, queries_field=field
            ):
                info = alc.query_info(ctx.dataset, query_id, field)
            if info is None:
                info = alc.next_query(
                    ctx.view, user, field, skip_ids=skip_ids, max_age=CACHE_SECONDS
                )
        except alc.ALCError as e:
            message, level = str(e), "error"
        image = None
        if info is not None:
            from alc_fiftyone.review import get_query

            try:
                sample, det = get_query(ctx.dataset, info["id"], field, info["sample_id"])
                image = data_uri(alc.render_query(sample, det, ctx.dataset))
            except alc.ALCError as e:
                message, level = f"cannot draw the query: {e}", "error"
        ctx.panel.state.set("query", info)
        ctx.panel.state.set("message", message)
        ctx.panel.state.set("level", level)
        ctx.panel.data.set("query_image", image)
        self._progress(ctx)

    def _progress(self, ctx):
        try:
            p = _alc().review_progress(
                ctx.view, self._field(ctx), self._reviewer(ctx), max_age=CACHE_SECONDS
            )
        except _alc().ALCError as e:  # progress must never break the panel
            p = {"error": str(e)}
        ctx.panel.state.set("progress", p)

    def _current(self, ctx):
        return ctx.panel.state.get("query")

    def _release(self, ctx, q) -> None:
        """Give the query on screen back; the panel state comes from the client, so a query
        that is not (or no longer) in the dataset is simply not released."""
        alc = _alc()
        try:
            alc.release(ctx.dataset, q["id"], self._reviewer(ctx), self._field(ctx))
        except (alc.ALCError, KeyError, TypeError):
            pass

    def _answer(self, ctx, label):
        alc = _alc()
        q = self._current(ctx)
        if not q:
            return self._serve(ctx, message="no query on screen", level="warning")
        user = self._reviewer(ctx)
        field = self._field(ctx)
        try:
            # still ours? (a claim that expired may have been taken by another reviewer)
            if q.get("status") == "claimed" and not alc.claim(
                ctx.dataset, q["id"], user, queries_field=field, sample_id=q["sample_id"]
            ):
                return self._serve(
                    ctx,
                    skip_ids=[q["id"]],
                    message="your claim on that query expired and another reviewer took it; "
                    "here is the next one",
                    level="warning",
                )
            n = alc.answer(ctx.dataset, q["id"], label, user=user, queries_field=field)
        except alc.ALCError as e:
            # e.g. the superpixels changed since ranking: keep the claim, say why
            self._release(ctx, q)
            return self._serve(ctx, skip_ids=[q["id"]], message=str(e), level="error")
        shown = "confirmed" if label is None or label == q["label"] else f"-> {label}"
        self._serve(ctx, message=f"saved: {q['label']} {shown} ({n} pixels changed)")

    # --- events ----------------------------------------------------------------------------

    def on_load(self, ctx):
        ctx.panel.state.set("view_key", _view_key(ctx))
        self._serve(ctx)

    def on_change_view(self, ctx):
        key = _view_key(ctx)
        q = self._current(ctx)
        if q and key == ctx.panel.state.get("view_key"):
            # the App sends the same view again (e.g. after a new field appears with the
            # first answer): keep the query and the message on screen
            return
        ctx.panel.state.set("view_key", key)
        if q:  # the query on screen may not be in the new view: give it back, pick again
            self._release(ctx, q)
        self._serve(ctx)

    def on_change_dataset(self, ctx):
        ctx.panel.state.set("query", None)
        ctx.panel.state.set("queries_field", None)
        self._serve(ctx)

    def confirm(self, ctx):
        q = self._current(ctx)
        self._answer(ctx, q["label"] if q else None)

    def answer_class(self, ctx):
        self._answer(ctx, ctx.params.get("label"))

    def pick_class(self, ctx):
        label = ctx.params.get("value")
        if label:
            ctx.panel.state.set("pick", None)
            self._answer(ctx, label)

    def skip(self, ctx):
        alc = _alc()
        q = self._current(ctx)
        if not q:
            return self._serve(ctx)
        try:
            alc.skip(
                ctx.dataset, q["id"], user=self._reviewer(ctx), queries_field=self._field(ctx)
            )
            msg, level = f"skipped a {q['label']} region", "info"
        except alc.ALCError as e:
            msg, level = str(e), "error"
        self._serve(ctx, skip_ids=[q["id"]], message=msg, level=level)

    def undo(self, ctx):
        alc = _alc()
        user = self._reviewer(ctx)
        field = self._field(ctx)
        try:
            from alc_fiftyone.review import last_answered

            last = last_answered(ctx.dataset, field, user)
            if last is None:
                raise alc.ALCError("you have no answer to undo")
            n = alc.undo(ctx.dataset, last, user=user, queries_field=field)
        except alc.ALCError as e:
            return self._serve(ctx, message=str(e), level="warning")
        q = self._current(ctx)
        if q and q["id"] != last:
            self._release(ctx, q)
        # the query taken back is shown again, to be answered anew
        self._serve(ctx, query_id=last, message=f"undone: {n} pixels restored")

    def refresh(self, ctx):
        self._serve(ctx, query_id=(self._current(ctx) or {}).get("id"))

    def set_reviewer(self, ctx):
        name = (ctx.params.get("value") or "").strip()
        q = self._current(ctx)
        if name and q:
            self._release(ctx, q)
        ctx.panel.state.set("reviewer", name or None)
        self._serve(ctx)

    def open_sample(self, ctx):
        q = self._current(ctx)
        if not q:
            return
        ctx.ops.set_selected_labels(
            [{"label_id": q["id"], "sample_id": q["sample_id"], "field": self._field(ctx)}]
        )
        ctx.ops.open_sample(id=q["sample_id"])

    def show_queue(self, ctx):
        ctx.ops.set_view(view=_alc().review_queue(ctx.dataset, self._field(ctx), None))

    def rank_again(self, ctx):
        q = self._current(ctx) or {}
        field = self._field(ctx)
        if q:
            self._release(ctx, q)
        label_field = q.get("label_field") or (ctx.dataset.info.get("alc") or {}).get(
            "label_field"
        )
        ctx.prompt(
            f"{_alc().PLUGIN_NAME}/rank_superpixels",
            params={"label_field": label_field, "queries_field": field},
            on_success=self.refresh,
        )

    def save_version(self, ctx):
        ctx.prompt(
            f"{_alc().PLUGIN_NAME}/save_revised_version",
            params={"name": f"{ctx.dataset.name}-revised"},
        )

    def export(self, ctx):
        ctx.prompt(f"{_alc().PLUGIN_NAME}/export_masks")

    # --- layout ----------------------------------------------------------------------------

    def render(self, ctx):
        panel = types.Object()
        state = ctx.panel.state
        q = state.get("query")
        message = state.get("message")
        if message:
            prefix = {"error": "**Refused:** ", "warning": "**Note:** "}.get(
                state.get("level"), ""
            )
            # a new name for each message: the App shows it afresh, never a stale one
            text = f"{prefix}{message}"
            panel.md(text, name=f"message_{zlib.crc32(text.encode()):08x}")
        progress = state.get("progress") or {}
        _md(ctx, panel, "progress_md", _progress_md(progress, state.get("reviewer")))
        if q is None:
            _md(
                ctx,
                panel,
                "query_md",
                "**No query to answer** in this view. Rank again to get new queries, or "
                "change the view.",
            )
        else:
            _md(
                ctx,
                panel,
                "query_md",
                f"**Is the outlined region `{q['label']}`?** "
                f"(rank {q.get('rank')}, round {q.get('round')}, {q.get('num_pixels')} px)",
            )
            panel.img("query_image", height="380px", alt_text="correction query")
            row = panel.h_stack("answers", align_x="left", gap=1)
            row.btn(
                "confirm",
                label=f"Correct: {q['label']}",
                variant="contained",
                icon="check",
                on_click=self.confirm,
            )
            shown = [s for s in q.get("suggestions") or [] if s != q["label"]]
            # keyboard: Enter, 1-9, S, U (panels/keys.js; nothing shows)
            panel.view(
                "keys",
                types.View(
                    component="AlcKeys",
                    composite_view=True,
                    confirm=self.method_to_uri("confirm"),
                    answer_class=self.method_to_uri("answer_class"),
                    skip=self.method_to_uri("skip"),
                    undo=self.method_to_uri("undo"),
                    suggestions=shown[:NUM_SUGGESTION_BUTTONS],
                ),
            )
            for i, name in enumerate(shown[:NUM_SUGGESTION_BUTTONS]):
                row.btn(
                    f"suggest_{i}",
                    label=f"{i + 1}. {name}",
                    variant="outlined",
                    on_click=self.answer_class,
                    params={"label": name},
                )
            classes = _class_names(ctx, q)
            choices = types.AutocompleteView(
                label="Another class", placeholder="type to search the classes"
            )
            for name in classes:
                choices.add_choice(name, label=name)
            panel.enum(
                "pick",
                choices.values(),
                view=choices,
                on_change=self.pick_class,
                label="Another class",
            )
        tools = panel.h_stack("tools", align_x="left", gap=1)
        tools.btn("skip", label="Skip", icon="skip_next", on_click=self.skip)
        tools.btn("undo", label="Undo", icon="undo", on_click=self.undo)
        tools.btn("open", label="Open sample", icon="open_in_new", on_click=self.open_sample)
        tools.btn("queue", label="Queue in grid", icon="view_list", on_click=self.show_queue)
        more = panel.h_stack("more", align_x="left", gap=1)
        more.btn("rank", label="Rank again", icon="refresh", on_click=self.rank_again)
        more.btn("save", label="Save revised version", icon="save", on_click=self.save_version)
        more.btn("export", label="Export masks", icon="download", on_click=self.export)
        panel.str(
            "reviewer",
            label="Reviewer",
            description="Your name: answers record it, and claims keep reviewers apart",
            default=state.get("reviewer"),
            on_change=self.set_reviewer,
        )
        return types.Property(panel, view=types.GridView(orientation="vertical", gap=1))


def _md(ctx, panel, name: str, text: str) -> None:
    """Markdown whose text can change: the App shows a property's value from the panel state
    (a ``default`` is only read when the view first appears)."""
    if ctx.panel.state.get(name) != text:
        ctx.panel.state.set(name, text)
    panel.md(text, name=name)


def _class_names(ctx, q) -> list[str]:
    from alc_fiftyone.review import answer_classes

    return answer_classes(ctx.dataset, q["label_field"]) or list(q.get("suggestions") or [])


def _progress_md(p: dict, reviewer) -> str:
    if not p or "error" in p:
        return f"Progress unavailable: {p.get('error', 'no queries yet')}" if p else ""
    r, t = p.get("round") or {}, p.get("total") or {}
    if not t.get("queries"):
        return "No queries yet: rank the superpixels first."
    mine = t.get("answered_by_user")
    return (
        f"**Round {p.get('latest_round')}**: {r.get('answered', 0)} answered / "
        f"{r.get('queued', 0)} queued, {r.get('skipped', 0)} skipped, "
        f"{r.get('pixels_changed', 0)} px changed  \n"
        f"**Total**: {t.get('answered', 0)} answered ({t.get('corrected', 0)} corrected) / "
        f"{t.get('queries', 0)} queries, {t.get('pixels_changed', 0)} px changed"
        + (f"  \nReviewer **{reviewer}**: {mine} answered" if reviewer else "")
    )
