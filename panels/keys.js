// Keyboard shortcuts of the ALC review panel (no build step: plain JavaScript on the globals
// the FiftyOne App exports). The panel renders an invisible view with component "AlcKeys";
// its props carry the URIs of the panel's methods and the suggested classes.
//   Enter: confirm   1-9: the n-th suggested class   S: skip   U: undo
(function () {
  var React = window.React;
  var fop = window.__fop__;
  var foo = window.__foo__;
  if (!React || !fop || !foo || !foo.useTriggerPanelEvent) {
    return;
  }

  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || (target && target.isContentEditable);
  }

  function AlcKeys(props) {
    var view = (props && props.schema && props.schema.view) || {};
    var trigger = foo.useTriggerPanelEvent();
    var latest = React.useRef(view);
    latest.current = view;
    React.useEffect(function () {
      function onKey(event) {
        if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) {
          return;
        }
        var v = latest.current;
        var key = event.key;
        if (key === "Enter" && v.confirm) {
          trigger(v.confirm, {});
        } else if ((key === "s" || key === "S") && v.skip) {
          trigger(v.skip, {});
        } else if ((key === "u" || key === "U") && v.undo) {
          trigger(v.undo, {});
        } else if (/^[1-9]$/.test(key) && v.answer_class) {
          var label = (v.suggestions || [])[parseInt(key, 10) - 1];
          if (!label) {
            return;
          }
          trigger(v.answer_class, { label: label });
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
    }, [trigger]);
    return null;
  }

  fop.registerComponent({
    name: "AlcKeys",
    label: "AlcKeys",
    component: AlcKeys,
    type: fop.PluginComponentType.Component,
    activator: function () {
      return true;
    },
  });
})();
