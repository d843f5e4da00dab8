// shopfloor web: the live parts of two pages. Without JavaScript the pages
// work as they are (reload to see new state); with it, the server sends a
// new rendering of the live part (server-sent events) whenever it changes.
(function () {
  "use strict";
  var status = document.getElementById("live-status");
  function say(text) { if (status) { status.textContent = text; } }

  // live swaps the element #id's content for each event named name from
  // the URL in its data-events attribute; then() runs after each swap.
  function live(id, name, then) {
    var box = document.getElementById(id);
    if (!box || !window.EventSource) { return null; }
    var src = new EventSource(box.getAttribute("data-events"));
    src.addEventListener(name, function (e) { box.innerHTML = e.data; if (then) { then(box); } });
    src.addEventListener("error", function () { say("Connection lost; reconnecting…"); });
    return src;
  }

  // The order page's timeline.
  var timeline = live("timeline", "timeline", function (box) {
    // Only a pending order can be cancelled: hide the button once it moved on.
    var st = box.querySelector("[data-status]");
    var cancel = document.getElementById("cancel");
    if (st && cancel && st.getAttribute("data-status") !== "pending_payment") { cancel.hidden = true; }
  });
  if (timeline) {
    timeline.addEventListener("open", function () { say("Live: new steps appear as they happen."); });
    timeline.addEventListener("status", function (e) { say("Live, but " + e.data + "."); });
    timeline.addEventListener("final", function () { say("Complete: nothing more is expected for this order."); timeline.close(); });
    timeline.addEventListener("gone", function () { say("This order cannot be shown."); timeline.close(); });
  }

  // The operator console.
  live("console", "console", null);
})();
