// The ALC review panel's card (no build step: plain JavaScript on the globals the FiftyOne App
// exports: window.React, window.__mui__ (MUI), window.__fop__ (plugins), window.__foo__
// (operators)). The panel renders one view with component "AlcReview"; its props carry the
// URIs of the panel's methods, and its data (panel data "review", set by the server with every
// query it shows) holds everything drawn: question, picture, answers, progress, message, name.
//
// One component draws it all from one object, so the question, the picture, the buttons and
// the keys always belong to the same query, and every answer carries that query's id (the
// panel writes an answer only while this tab's reviewer holds that query).
//
// Each tab is its own reviewer: the card keeps its tab's id and reviewer name in
// sessionStorage (a reload keeps them, another tab has its own) and sends them with every
// event (param "card"); the panel's state is not used for them, since FiftyOne shares a
// panel's state between the tabs of one App. The card draws only the answer to its latest
// event (a late answer to an earlier one is dropped), and a name becomes the tab's once the
// server accepted it.
//
// Keys (ignored while typing in a field or while a dialog is open):
//   Enter: yes, it is <class>   1-9: no, it is the n-th class   M: mixed (split the region)
//   S: skip   U: undo (the last action of any kind)   W: whole image / region
//
// No field takes the focus on its own; the reviewer's name is sent on Enter or when the field
// is left (Escape restores it); "Another class" answers only a class picked from its list, and
// is cleared after.
(function () {
  var React = window.React;
  var mui = window.__mui__;
  var fop = window.__fop__;
  var foo = window.__foo__;
  if (!React || !mui || !fop || !foo || !foo.useTriggerPanelEvent) {
    return;
  }
  var h = React.createElement;
  var ROOT = {
    display: "flex",
    flexDirection: "column",
    gap: 6,
    padding: "2px 10px 4px 4px",
    boxSizing: "border-box",
    width: "100%",
    minWidth: 0,
    overflow: "hidden",
    overflowWrap: "anywhere", // a long name or class never runs off the card
  };
  var MIN_FRAME = 160; // the picture's least height, pixels
  var SLACK = 8; // room left under the card, pixels

  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" ||
      (target && target.isContentEditable);
  }

  function dialogOpen() {
    // an operator prompt or another modal: the keys are theirs
    return !!document.querySelector(".MuiDialog-root, [role='dialog']");
  }

  var TAB_KEY = "alc-review-tab";
  var NAME_KEY = "alc-review-name";

  function stored(key) {
    try {
      return window.sessionStorage.getItem(key) || "";
    } catch (e) {
      return "";
    }
  }

  function store(key, value) {
    try {
      window.sessionStorage.setItem(key, value);
    } catch (e) {
      // no storage (a private window's quota): the tab keeps its identity until reloaded
    }
  }

  var gridReload = { asked: false }; // this page asked for the App settings (once)

  function tabIdentity() {
    // this tab's id and reviewer name; a new tab gets a new id and no name (the server
    // then names it after the id, so two unnamed tabs are two reviewers)
    var tab = stored(TAB_KEY);
    if (!tab) {
      tab = Math.random().toString(36).slice(2, 10) + Date.now().toString(36).slice(-4);
      store(TAB_KEY, tab);
    }
    return { tab: tab, name: stored(NAME_KEY) };
  }

  function Key(props) {
    return h(
      "kbd",
      {
        style: {
          marginLeft: 4,
          padding: "0 5px",
          border: "1px solid currentColor",
          borderRadius: 4,
          fontSize: "0.75em",
          fontFamily: "inherit",
          opacity: 0.8,
          lineHeight: "1.4em",
        },
      },
      props.k
    );
  }

  function AnswerButton(props) {
    return h(
      mui.Button,
      {
        variant: props.primary ? "contained" : "outlined",
        color: props.primary ? "primary" : "secondary",
        size: props.small ? "small" : "medium",
        disabled: props.disabled,
        onClick: props.onClick,
        title: props.title,
        sx: {
          textTransform: "none",
          whiteSpace: "nowrap", // a button is one line ("Undo U" never wraps)
          flexShrink: 0,
          minWidth: 0,
          py: props.small ? 0.25 : 0.5,
          px: props.small ? 1 : 1.5,
          fontSize: props.small ? 12 : 15,
        },
      },
      props.label,
      props.k ? " " : null,
      props.k ? h(Key, { k: props.k }) : null
    );
  }

  function NameField(props) {
    var committed = props.value || "";
    var state = React.useState(committed);
    var draft = state[0];
    var setDraft = state[1];
    var editing = React.useRef(false);
    // a new card shows the tab's name (also after a name the server refused)
    React.useEffect(
      function () {
        if (!editing.current) {
          setDraft(committed);
        }
      },
      [committed, props.seq]
    );
    function commit() {
      editing.current = false;
      var name = (draft || "").trim();
      if (name && name !== committed) {
        props.onCommit(name);
      } else {
        setDraft(committed);
      }
    }
    return h(
      "label",
      { style: { display: "flex", alignItems: "center", gap: 6, fontSize: 13 } },
      h("span", null, "Reviewer"),
      h("input", {
        "aria-label": "Reviewer",
        value: draft,
        spellCheck: false,
        title: "Your name: answers record it, and claims keep reviewers apart. " +
          "Enter or leaving the field sets it; Escape restores it.",
        style: {
          width: 150,
          padding: "2px 6px",
          font: "inherit",
          color: "inherit",
          background: "transparent",
          border: "1px solid rgba(127,127,127,0.6)",
          borderRadius: 4,
        },
        onFocus: function () {
          editing.current = true;
        },
        onChange: function (e) {
          editing.current = true;
          setDraft(e.target.value);
        },
        onKeyDown: function (e) {
          if (e.key === "Enter") {
            e.preventDefault();
            e.target.blur(); // commits (onBlur)
          } else if (e.key === "Escape") {
            e.preventDefault();
            setDraft(committed);
            editing.current = false;
            var t = e.target;
            setTimeout(function () {
              t.blur();
            }, 0);
          }
        },
        onBlur: commit,
      })
    );
  }

  function ClassPicker(props) {
    var s = React.useState("");
    var input = s[0];
    var setInput = s[1];
    React.useEffect(
      function () {
        setInput("");
      },
      [props.queryId]
    );
    return h(
      "div",
      { style: { display: "flex", alignItems: "center", gap: 8, minWidth: 190, flex: "1 1 190px" } },
      h("span", { style: { fontSize: 13, whiteSpace: "nowrap" } }, "Another class"),
      h(mui.Autocomplete, {
        options: props.classes || [],
        value: null,
        inputValue: input,
        onInputChange: function (e, v, reason) {
          setInput(reason === "reset" ? "" : v);
        },
        onChange: function (e, v) {
          setInput("");
          if (v) {
            props.onPick(v);
          }
        },
        freeSolo: false,
        autoHighlight: false,
        blurOnSelect: true,
        clearOnBlur: true,
        disabled: props.disabled,
        size: "small",
        sx: { flex: 1, minWidth: 100 },
        noOptionsText: "no such class",
        renderInput: function (params) {
          return h(
            mui.TextField,
            Object.assign({}, params, { placeholder: "pick a class", size: "small" })
          );
        },
      })
    );
  }

  function AlcReview(props) {
    var view = (props && props.schema && props.schema.view) || {};
    var incoming = (props && props.data) || {};
    var trigger = foo.useTriggerPanelEvent();
    var ident = React.useRef(null);
    if (!ident.current) {
      ident.current = tabIdentity();
    }
    var lastReq = React.useRef(0);
    // what is drawn: the server's answer to this tab's latest event
    var drawn = React.useRef({ req: -1, seq: null, data: {}, message: null, level: null });
    if (incoming.seq !== undefined && incoming.seq !== drawn.current.seq) {
      var req = typeof incoming.req === "number" ? incoming.req : -1;
      if (req >= drawn.current.req) {
        var keep = incoming.keep_message;
        drawn.current = {
          req: req,
          seq: incoming.seq,
          data: incoming,
          message: keep ? drawn.current.message : incoming.message,
          level: keep ? drawn.current.level : incoming.level,
        };
        if (incoming.reviewer && incoming.reviewer !== ident.current.name) {
          ident.current.name = incoming.reviewer; // the name the server served this tab as
          store(NAME_KEY, incoming.reviewer);
        }
      }
    }
    var data = drawn.current.data;
    var q = data.query || null;
    var pending = React.useState(null);
    var busy = pending[0];
    var setBusy = pending[1];
    var listing = React.useState(false);
    var showSkipped = listing[0];
    var setShowSkipped = listing[1];
    var skippedList = React.useRef([]);
    if (Array.isArray(data.skipped)) {
      skippedList.current = data.skipped;
    }
    var latest = React.useRef({});
    // the picture's frame: 3:2 across the card's width, at most as tall as the panel shows
    // with the rest of the card below it; that height is set when the panel's size changes
    // and only shrinks in between, when a card's other rows would push the last one out of
    // view (the frame then keeps its size from one query to the next)
    var rootRef = React.useRef(null);
    var frameRef = React.useRef(null);
    var sized = React.useState(null);
    var frameHeight = sized[0];
    var setFrameHeight = sized[1];
    var sizeRef = React.useRef({ height: null, width: null, vh: null });
    function fitFrame(fresh) {
      var root = rootRef.current;
      var frame = frameRef.current;
      if (!root || !frame) {
        return;
      }
      var cur = sizeRef.current;
      var width = frame.clientWidth;
      var vh = window.innerHeight;
      var rest = root.scrollHeight - frame.offsetHeight;
      var top = root.getBoundingClientRect().top;
      var want = Math.round(Math.max(MIN_FRAME, vh - top - rest - SLACK));
      var resized = fresh || cur.height === null || cur.width !== width || cur.vh !== vh;
      if (resized ? Math.abs(want - cur.height) > 1 || cur.height === null : want < cur.height) {
        sizeRef.current = { height: want, width: width, vh: vh };
        setFrameHeight(want);
      } else if (resized) {
        sizeRef.current = { height: cur.height, width: width, vh: vh };
      }
    }
    React.useLayoutEffect(function () {
      fitFrame(false);
    });
    React.useEffect(function () {
      function onResize() {
        fitFrame(true);
      }
      window.addEventListener("resize", onResize);
      var observer = window.ResizeObserver ? new window.ResizeObserver(onResize) : null;
      if (observer && rootRef.current) {
        observer.observe(rootRef.current.parentElement || rootRef.current);
      }
      return function () {
        window.removeEventListener("resize", onResize);
        if (observer) {
          observer.disconnect();
        }
      };
    }, []);
    // a new card (or the same query served again) ends what was pending
    React.useEffect(
      function () {
        setBusy(null);
      },
      [data.seq]
    );

    function send(uri, params, guard, done) {
      if (!uri) {
        return;
      }
      var cur = q;
      if (guard) {
        if (!cur || busy === cur.id) {
          return; // one answer per query on screen: a second press waits for the next card
        }
        setBusy(cur.id);
        params = Object.assign({ query_id: cur.id }, params || {});
      }
      lastReq.current += 1;
      var card = {
        tab: ident.current.tab,
        reviewer: ident.current.name,
        shown: cur ? { id: cur.id, sample_id: cur.sample_id } : null,
        view_key: data.view_key || null,
        whole: !!(cur && cur.whole),
        req: lastReq.current,
      };
      trigger(uri, Object.assign({ card: card }, params || {}), false, function () {
        setBusy(null);
        if (done) {
          done();
        }
      });
    }

    // the card appears: it sends itself (only it knows its tab), and the server shows the
    // query this tab's reviewer holds, or the next one
    var started = React.useRef(false);
    React.useEffect(
      function () {
        if (!started.current && view.refresh) {
          started.current = true;
          send(view.refresh, { why: "start" }, false);
        }
      },
      [view.refresh]
    );
    // an event the server got without this card (a view or dataset change, an operator's
    // result) asks the card to send itself again
    var resync = incoming.resync || null;
    var resyncToken = resync ? resync.token : null;
    React.useEffect(
      function () {
        if (resync && resync.why === "grid") {
          // the dataset's new App settings (colours, fields drawn) go to the App session;
          // then this tab is reloaded once, since thumbnails drawn meanwhile keep the App's
          // own colours (its name and claims survive a reload)
          if (!gridReload.asked) {
            gridReload.asked = true;
            send(view.refresh, { why: "grid" }, false, function () {
              setTimeout(function () {
                window.location.reload();
              }, 1500);
            });
          }
          return undefined;
        }
        if (resync && started.current) {
          send(
            view.refresh,
            { why: resync.why, message: resync.message, level: resync.level, serve: resync.serve },
            false
          );
        }
        return undefined;
      },
      [resyncToken]
    );

    var others = q ? (q.suggestions || []).filter(function (s) { return s !== q.label; }) : [];
    others = others.slice(0, 9);
    var actions = {
      yes: function () {
        send(view.answer, { label: q.label, asked: q.label, confirm: true }, true);
      },
      pick: function (label) {
        send(view.answer, { label: label, asked: q.label }, true);
      },
      nth: function (k) {
        if (others[k]) {
          send(view.answer, { label: others[k], asked: q.label }, true);
        }
      },
      skip: function () {
        send(view.skip, {}, true);
      },
      mixed: function () {
        send(view.mixed, {}, true);
      },
      skipped: function () {
        var open = !showSkipped;
        setShowSkipped(open);
        if (open) {
          send(view.list_skipped, {}, false);
        }
      },
      revisit: function (id) {
        setShowSkipped(false);
        send(view.revisit, { query_id: id }, false);
      },
      undo: function () {
        send(view.undo, {}, false);
      },
      whole: function () {
        send(view.toggle_whole, {}, false);
      },
    };
    latest.current = { q: q, actions: actions };

    React.useEffect(
      function () {
        function onKey(event) {
          if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target) ||
              dialogOpen()) {
            return;
          }
          var cur = latest.current;
          var a = cur.actions;
          var key = event.key;
          if (key === "u" || key === "U") {
            a.undo();
          } else if (!cur.q) {
            return;
          } else if (key === "Enter") {
            a.yes();
          } else if (key === "s" || key === "S") {
            a.skip();
          } else if (key === "m" || key === "M") {
            a.mixed();
          } else if (key === "w" || key === "W") {
            a.whole();
          } else if (/^[1-9]$/.test(key)) {
            a.nth(parseInt(key, 10) - 1);
          } else {
            return;
          }
          event.preventDefault();
          event.stopPropagation();
        }
        window.addEventListener("keydown", onKey, true);
        return function () {
          window.removeEventListener("keydown", onKey, true);
        };
      },
      []
    );

    var nSkipped = data.skipped_count || 0;
    var skippedToggle = h(AnswerButton, {
      key: "skipped",
      small: true,
      label: "Skipped (" + nSkipped + ")" + (showSkipped ? " \u25b4" : " \u25be"),
      title: "The queries you skipped: pick one to answer it now",
      onClick: actions.skipped,
    });
    var skippedList_ = !showSkipped
      ? []
      : skippedList.current.length
        ? skippedList.current.map(function (e) {
            return h(AnswerButton, {
              key: e.id,
              small: true,
              label: "rank " + e.rank + ": " + e.label,
              title: "Answer this skipped query now",
              onClick: function () {
                actions.revisit(e.id);
              },
            });
          })
        : [h("span", { key: "none", style: { fontSize: 13, opacity: 0.75 } }, "none skipped")];
    // one row: the skipped list's toggle and the end of the loop (the list opens under it)
    var tools = h(
      "div",
      { key: "tools", style: { display: "flex", flexWrap: "wrap", alignItems: "center", gap: 6 } },
      [skippedToggle].concat(
        [
          ["Open sample", view.open_sample, "Open the sample with the query selected"],
          ["Queue in grid", view.show_queue, "Show the review queue in the grid, best first"],
          ["Rank again", view.rank_again, "Rank the superpixels again (retrains on the answers)"],
          ["Save revised version", view.save_version, "Save the corrections as a new dataset"],
          ["Export masks", view.export, "Write the corrected masks as PNG files"],
          ["Audit report", view.report, "Write the audit report (HTML): what is left, the errata"],
        ].map(function (t) {
          return h(AnswerButton, {
            key: t[0],
            small: true,
            label: t[0],
            title: t[2],
            onClick: function () {
              send(t[1], {}, false);
            },
          });
        }),
        skippedList_.length
          ? [h("div", { key: "list", style: { display: "flex", flexWrap: "wrap", gap: 6,
                                              flexBasis: "100%" } }, skippedList_)]
          : []
      )
    );
    var message = drawn.current.message;
    var level = drawn.current.level || "info";
    var color = { error: "#f44336", warning: "#ffa726", success: "#66bb6a" }[level];
    var children = [];
    // progress and the name: one compact bar on top
    children.push(
      h(
        "div",
        {
          key: "top",
          style: { display: "flex", flexWrap: "wrap", alignItems: "center", gap: "2px 16px",
                   fontSize: 13, lineHeight: "18px", minWidth: 0 },
        },
        h(
          "div",
          // (its lines never widen the card: a long name is cut with an ellipsis)
          { style: { flex: "1 1 260px", minWidth: 0, contain: "inline-size" } },
          (data.progress || []).map(function (line, i) {
            return h(
              "div",
              {
                key: i,
                title: line,
                // the counts stay one line each; the standing line after them (where the
                // review stands, a sentence) wraps rather than hide its interval
                style: {
                  opacity: i ? 0.75 : 1,
                  whiteSpace: i >= 2 ? "normal" : "nowrap",
                  overflow: "hidden",
                  textOverflow: "ellipsis",
                },
              },
              line
            );
          })
        ),
        h(NameField, {
          value: ident.current.name || data.reviewer,
          seq: data.seq,
          onCommit: function (name) {
            send(view.set_reviewer, { value: name }, false);
          },
        })
      )
    );
    if (message) {
      children.push(
        h(
          "div",
          { key: "msg", role: "status", style: { fontSize: 13, color: color, lineHeight: "18px" } },
          message
        )
      );
    }
    if (!q) {
      children.push(
        h(
          "div",
          { key: "none", style: { fontSize: 15, margin: "12px 0" } },
          h("b", null, "No query to answer"),
          " in this view. Rank again to get new queries, or change the view."
        )
      );
      children.push(tools);
      return h("div", { style: ROOT, ref: rootRef }, children);
    }
    children.push(
      h(
        "div",
        { key: "q", style: { fontSize: 15, lineHeight: "21px" } },
        h("span", null, "Is the outlined region "),
        h("b", null, q.label),
        h("span", null, "? "),
        h(
          "span",
          { style: { fontSize: 12, opacity: 0.75 } },
          "(rank " + q.rank + ", round " + q.round + ", " + q.pixels + " px)"
        ),
        q.mix
          ? h("div", { style: { fontSize: 13, opacity: 0.9 } }, "Now in the region: " + q.mix)
          : null
      )
    );
    // the picture: a fixed frame, whatever the region's shape
    children.push(
      h(
        "div",
        {
          key: "frame",
          ref: frameRef,
          style: {
            position: "relative",
            width: "100%",
            flexShrink: 0,
            aspectRatio: "3 / 2",
            maxHeight: frameHeight || "calc(100vh - 430px)",
            minHeight: MIN_FRAME,
            background: "#111",
            borderRadius: 4,
            overflow: "hidden",
          },
        },
        h("img", {
          src: q.image,
          alt: "correction query",
          style: { width: "100%", height: "100%", objectFit: "contain", display: "block" },
        }),
        h(
          "div",
          { style: { position: "absolute", top: 6, right: 6 } },
          h(AnswerButton, {
            small: true,
            label: q.whole ? "Region" : "Whole image",
            k: "W",
            title: q.whole ? "Show the region's surroundings" : "Show the whole image",
            onClick: actions.whole,
          })
        )
      )
    );
    children.push(
      h(
        "div",
        { key: "legend", style: { display: "flex", flexWrap: "wrap", gap: "2px 12px",
                                  fontSize: 13 } },
        (q.legend || []).map(function (e) {
          return h(
            "span",
            { key: e.name, style: { display: "inline-flex", alignItems: "center", gap: 4 } },
            h("span", { style: { width: 12, height: 12, background: e.color, borderRadius: 2,
                                 border: "1px solid rgba(255,255,255,0.4)" } }),
            (e.now ? "outlined now: " : "") + e.name
          );
        }),
        h("span", { style: { opacity: 0.7 } }, "\u2605 inside the region asked about")
      )
    );
    var disabled = busy === q.id;
    var answers = [
      h(AnswerButton, {
        key: "yes",
        primary: true,
        label: "Yes, it is " + q.label,
        k: "Enter",
        disabled: disabled,
        onClick: actions.yes,
      }),
    ];
    if (others.length) {
      answers.push(h("span", { key: "no", style: { fontSize: 13, marginLeft: 4 } }, "No, it is:"));
      others.forEach(function (name, i) {
        answers.push(
          h(AnswerButton, {
            key: "s" + i,
            label: i + 1 + ". " + name,
            disabled: disabled,
            onClick: function () {
              actions.nth(i);
            },
          })
        );
      });
    }
    children.push(
      h("div", { key: "answers", style: { display: "flex", flexWrap: "wrap", alignItems: "center",
                                          gap: 6 } }, answers)
    );
    children.push(
      h(
        "div",
        { key: "more", style: { display: "flex", flexWrap: "wrap", alignItems: "center", gap: 8 } },
        h(ClassPicker, {
          classes: data.classes,
          queryId: q.id + ":" + data.seq,
          disabled: disabled,
          onPick: actions.pick,
        }),
        h(AnswerButton, {
          label: "Mixed",
          k: "M",
          disabled: disabled,
          title: "The region holds several classes: split it into smaller pieces",
          onClick: actions.mixed,
        }),
        h(AnswerButton, { label: "Skip", k: "S", disabled: disabled, onClick: actions.skip }),
        h(AnswerButton, { label: "Undo", k: "U", onClick: actions.undo })
      )
    );
    children.push(tools);
    return h("div", { style: ROOT, ref: rootRef }, children);
  }

  fop.registerComponent({
    name: "AlcReview",
    label: "AlcReview",
    component: AlcReview,
    type: fop.PluginComponentType.Component,
    activator: function () {
      return true;
    },
  });
})();
