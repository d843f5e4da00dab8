// shopfloor web: the order page's live timeline. Without JavaScript the
// page works as it is (reload to see new steps); with it, the timeline is
// replaced whenever the server sends a new one (server-sent events).
(function () {
  "use strict";
  var box = document.getElementById("timeline");
  var status = document.getElementById("live-status");
  if (!box || !window.EventSource) { return; }
  var src = new EventSource(box.getAttribute("data-events"));
  function say(text) { if (status) { status.textContent = text; } }
  src.addEventListener("open", function () { say("Live: new steps appear as they happen."); });
  src.addEventListener("timeline", function (e) {
    box.innerHTML = e.data;
    // Only a pending order can be cancelled: hide the button once it moved on.
    var st = box.querySelector("[data-status]");
    var cancel = document.getElementById("cancel");
    if (st && cancel && st.getAttribute("data-status") !== "pending_payment") { cancel.hidden = true; }
  });
  src.addEventListener("status", function (e) { say("Live, but " + e.data + "."); });
  src.addEventListener("final", function () { say("Complete: nothing more is expected for this order."); src.close(); });
  src.addEventListener("gone", function () { say("This order cannot be shown."); src.close(); });
  src.addEventListener("error", function () { say("Connection lost; reconnecting…"); });
})();
