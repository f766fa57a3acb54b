"""What every operator of the plugin shares: one base class that builds the configuration,
the form frame, the defaults (taken from the SDK function the operator adapts), delegation,
shards, progress and the summary output.

Operators only adapt ``alc_fiftyone`` functions to the App, through its public API
(``import alc_fiftyone as alc``). The library is imported when a form is resolved or an
operator runs, never when the plugin is registered (at every App start), so that stays light.
"""

from __future__ import annotations

import inspect
import json
import math
from typing import ClassVar

import fiftyone.operators as foo
from fiftyone.operators import types

# Above this many target samples an operator suggests running delegated (in the background).
DELEGATE_ABOVE = 50


def user_error(error: Exception) -> bool:
    """Whether ``error`` is the user's to fix (bad data, a wrong option, a missing file): the
    App then shows its one-line message instead of a traceback."""
    return isinstance(error, (alc().ALCError, ValueError, FileNotFoundError, PermissionError))


EXPORT_FORMATS = {
    "voc": "palette PNG, VOC colours",
    "index": "grayscale PNG of class ids",
}


def alc():
    import alc_fiftyone

    return alc_fiftyone


_DEFAULTS: dict[str, dict] = {}


def sdk_defaults(function: str) -> dict:
    """The keyword defaults of the public SDK function ``alc.<function>`` (cached)."""
    if function not in _DEFAULTS:
        sig = inspect.signature(getattr(alc(), function))
        _DEFAULTS[function] = {
            name: p.default
            for name, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty
        }
    return _DEFAULTS[function]


class ALCOperator(foo.Operator):
    """Base class of the plugin's operators.

    A subclass sets ``NAME``, ``LABEL``, ``DESCRIPTION``, ``ICON`` and ``SDK`` (the name of the
    public SDK function it adapts, whose keyword defaults fill the form), optionally
    ``FORM_DEFAULTS`` (defaults the form sets differently from the SDK, on purpose) and
    ``SHARDABLE``; it writes :meth:`form` (the inputs) and :meth:`run` (the call, returning the
    output dict). The base builds the configuration and the form frame, suggests delegated
    execution for large targets, queues one delegated operation per shard when asked, and
    reloads the App's dataset after a run that wrote fields.

    ``delegate`` in the params forces the choice (True: delegated, False: immediate); without
    it the App offers both and preselects delegation above ``DELEGATE_ABOVE`` samples.
    """

    NAME = ""
    LABEL = ""
    DESCRIPTION = ""
    ICON = ""
    SDK: str | None = None
    FORM_DEFAULTS: ClassVar[dict] = {}
    SHARDABLE = False
    RELOADS = True  # the run writes fields: the App reloads the dataset afterwards

    @property
    def config(self):
        return foo.OperatorConfig(
            name=self.NAME,
            label=f"ALC: {self.LABEL}",
            description=self.DESCRIPTION,
            icon=self.ICON,
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            resolve_execution_options_on_change=True,
        )

    # --- defaults and parameters ---------------------------------------------------------

    def defaults(self, ctx=None) -> dict:
        """The form's defaults: the SDK function's, then :attr:`FORM_DEFAULTS` (a subclass may
        add defaults read from the dataset of ``ctx``)."""
        base = sdk_defaults(self.SDK) if self.SDK else {}
        return {**base, **self.FORM_DEFAULTS}

    def param(self, ctx, name: str):
        """``ctx.params[name]``, or the default when it is missing or blank (the App fills in
        defaults, ``execute_operator`` does not)."""
        value = ctx.params.get(name)
        return self.defaults(ctx).get(name) if value is None or value == "" else value

    # --- the form and the run --------------------------------------------------------------

    def resolve_input(self, ctx):
        inputs = types.Object()
        self.form(ctx, inputs)
        if self.SHARDABLE:
            shard_inputs(inputs)
        return types.Property(inputs, view=types.View(label=self.config.label))

    def form(self, ctx, inputs: types.Object) -> None:  # pragma: no cover - interface
        """Add the operator's inputs to ``inputs``."""

    def execute(self, ctx):
        if self.SHARDABLE:
            queued = self.queue_shards(ctx)
            if queued is not None:
                return queued
        try:
            out = self.run(ctx)
        except Exception as e:
            # a worker's operation must fail (failed shards are rerun); a bug keeps its trace
            if ctx.delegated or not user_error(e):
                raise
            # in the App: one line that says what to do, no traceback
            return {"error": " ".join(str(e).split()) or type(e).__name__}
        if self.RELOADS:
            reload_app(ctx)
        return out

    def run(self, ctx) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def target(self, ctx, sharded: bool = True):
        """The samples the operator acts on: the images of the target view (:func:`images_of`:
        behind a patches view, such as the review queue in the grid, the images it was made
        from), or their shard when the params hold ``shard`` (``"i/n"``, an id range; see
        :mod:`alc_fiftyone.steps.sharding`, used by ``alc.queue_shards``). ``sharded=False``:
        all of them (ranking slices them itself, to resolve its budget over all of them and
        merge the shards)."""
        view = images_of(ctx)
        shard = ctx.params.get("shard")
        if not sharded or shard in (None, ""):
            return view
        return alc().shard_view(view, shard)

    def resolve_delegation(self, ctx):
        delegate = ctx.params.get("delegate")
        return None if delegate is None else bool(delegate)

    def queue_shards(self, ctx):
        """With ``num_shards`` > 1 (see :func:`shard_inputs`) and no ``shard`` yet, queue one
        delegated operation of this operator per shard of the target (``alc.queue_shards``)
        instead of running, and return the result to show; otherwise None."""
        count = int(ctx.params.get("num_shards") or 1)
        if count <= 1 or ctx.params.get("shard") not in (None, ""):
            return None
        params = {k: v for k, v in ctx.params.items() if k not in ("num_shards", "delegate")}
        run = alc().queue_shards(images_of(ctx), self.uri, params, count)
        summary = {"run_id": run.run_id, "shards": run.num_shards, "operations": run.op_ids}
        text = f"Queued {run.num_shards} delegated operations (run `{run.run_id}`)"
        return {"text": text, "summary": summary}

    def resolve_execution_options(self, ctx):
        if int(ctx.params.get("num_shards") or 1) > 1 and not ctx.params.get("shard"):
            # queueing the shards takes a moment; the shards themselves run delegated
            return foo.ExecutionOptions(
                allow_immediate_execution=True, allow_delegated_execution=False
            )
        if self.resolve_delegation(ctx) is not None or ctx.dataset is None:
            return super().resolve_execution_options(ctx)
        return foo.ExecutionOptions(
            allow_immediate_execution=True,
            allow_delegated_execution=True,
            default_choice_to_delegated=len(self.target(ctx)) > DELEGATE_ABOVE,
        )

    def resolve_output(self, ctx):
        # in words: what was done, or why not, never both (the App resolves the output with
        # the run's result at hand); the run's full summary stays in the result, for
        # scripts, without being shown as a JSON tree
        outputs = types.Object()
        error = run_error(ctx)
        if error:
            outputs.view("not_done", types.Error(label=f"Not done: {error}"))
        else:
            outputs.str("text", label="Done", view=types.MarkdownView())
        return types.Property(outputs, view=types.View(label=self.config.label))

    def notice(self, ctx, inputs: types.Object, action: str) -> None:
        """The form's first line: what the operator acts on, counted in images (behind a
        patches view: the images, not the patches)."""
        view = ctx.target_view()
        n = len(self.target(ctx, sharded=False))
        patches = view is not None and alc().samples_to_rank(view) is not view
        behind = f", behind the {len(view)} patches in the grid" if patches else ""
        target_notice(inputs, n, action, behind)


def images_of(ctx):
    """The images an operator acts on: the target view (the selected samples, or the view),
    except behind a patches view (such as the review queue in the grid), the images it was
    made from: those of the selected patches, else the whole collection the patches come
    from, as ``alc.rank_superpixels`` ranks it (``alc.samples_to_rank``)."""
    view = ctx.target_view()
    images = alc().samples_to_rank(view)
    if images is view:
        return view
    if ctx.selected:  # patches picked in the grid: their images
        return images.select(view.distinct("sample_id"))
    return images


def run_error(ctx) -> str | None:
    """The one-line error a run returned (``{"error": ...}``), when the App resolves the
    output of a run; None after a success or before a run."""
    results = getattr(ctx, "results", None)
    error = results.get("error") if isinstance(results, dict) else None
    return str(error) if error else None


# --- form pieces ---------------------------------------------------------------------------


def segmentation_fields(ctx) -> list[str]:
    """Names of the dataset's ``fo.Segmentation`` fields."""
    import fiftyone as fo

    if ctx.dataset is None:
        return []
    return sorted(ctx.dataset.get_field_schema(embedded_doc_type=fo.Segmentation))


def field_choice(
    inputs: types.Object,
    name: str,
    fields: list[str],
    label: str,
    description: str,
    default: str | None = None,
    optional: bool = False,
) -> None:
    """A dropdown of segmentation fields.

    A field without a default must be chosen (unless ``optional``); when there is nothing to
    choose from, the form says so and cannot be submitted.
    """
    dropdown = types.Dropdown(label=label, description=description)
    for field in fields:
        dropdown.add_choice(field, label=field)
    required = default is None and not optional
    missing = required and not fields
    inputs.enum(
        name,
        dropdown.values(),
        label=label,
        description=description,
        default=default if default in fields else None,
        required=required,
        view=dropdown,
        invalid=missing,
        error_message="this dataset has no Segmentation field" if missing else "",
    )


def rerun_inputs(inputs: types.Object, defaults: dict) -> None:
    """The two inputs of every per-sample step: recompute done samples, skip failing ones."""
    inputs.bool(
        "overwrite",
        default=defaults["overwrite"],
        label="Overwrite",
        description="Recompute samples that are already done",
    )
    skip_failures_input(inputs, defaults)


def skip_failures_input(inputs: types.Object, defaults: dict) -> None:
    inputs.bool(
        "skip_failures",
        default=defaults["skip_failures"],
        label="Skip failures",
        description="Skip (and list) samples that cannot be processed instead of stopping",
    )


def shard_inputs(inputs: types.Object) -> None:
    """The number of shards: above 1, running the operator queues that many delegated
    operations, one per slice of the target, for ``fiftyone delegated launch`` workers."""
    inputs.int(
        "num_shards",
        default=1,
        min=1,
        label="Shards",
        description="Split the target into this many delegated operations, one per slice, "
        "for several workers (1: one operation)",
    )


def target_notice(inputs: types.Object, n: int, action: str, behind: str = "") -> None:
    hint = f" (more than {DELEGATE_ABOVE}: consider scheduling it)" if n > DELEGATE_ABOVE else ""
    inputs.view("target_notice", types.Notice(label=f"{action} {n} image(s){behind}{hint}"))


def budget_value(value):
    """A form number as a budget: whole numbers >= 1 are query counts, others fractions."""
    if value is None:
        return None
    value = float(value)
    return int(value) if value >= 1 and value.is_integer() else value


class ContextProgress:
    """``progress(done, total, desc)`` for the library, reported with ``ctx.set_progress``.

    Reports when the stage changes, at the end, and otherwise at most every ``step`` of the
    way, so a long run over many samples does not flood the App.
    """

    def __init__(self, ctx, step: float = 0.01):
        self.ctx = ctx
        self.step = step
        self._desc = None
        self._last = -math.inf

    def __call__(self, done: int, total: int, desc: str) -> None:
        fraction = done / total if total else 1.0
        if desc == self._desc and fraction < 1.0 and fraction - self._last < self.step:
            return
        self._desc, self._last = desc, fraction
        self.ctx.set_progress(progress=fraction, label=f"{desc} {done}/{total}")


def superpixels_text(summary: dict) -> str:
    """A per-sample step's summary in words."""
    text = f"{summary.get('processed', 0)} sample(s) done"
    if summary.get("mean_superpixels"):
        text += f", {summary['mean_superpixels']:.0f} regions per image"
    if summary.get("skipped_existing"):
        text += f"; {summary['skipped_existing']} already had a result"
    if summary.get("failed"):
        text += f"; {len(summary['failed'])} could not be read (see the summary)"
    if summary.get("note"):
        text += f". {summary['note']}"
    return text


def jsonable(value):
    """``value`` made JSON-serializable (numpy scalars and arrays, paths, other objects)."""

    def default(obj):
        if hasattr(obj, "tolist"):
            return obj.tolist()
        return str(obj)

    return json.loads(json.dumps(value, default=default))


def reload_app(ctx) -> None:
    """Ask the App to reload the dataset after new fields were written."""
    if not ctx.delegated:
        ctx.ops.reload_dataset()
