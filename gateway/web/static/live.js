// Live thread updates: new messages and delivery states arrive without a reload.
// The page works fully without this script (replies are plain form posts).
(function () {
  "use strict";
  var thread = document.getElementById("thread");
  if (!thread || !window.EventSource) return;
  var url = "/conversations/" + thread.dataset.conversation + "/events?after=" + thread.dataset.last +
    "&since=" + encodeURIComponent(thread.dataset.since); // delivery states changed since the page was made
  var source = new EventSource(url); // reconnects by itself, sending Last-Event-ID
  source.addEventListener("message", function (event) {
    var data = JSON.parse(event.data);
    if (document.getElementById("m" + data.id)) return; // already on the page
    var empty = document.getElementById("empty");
    if (empty) empty.remove();
    thread.insertAdjacentHTML("beforeend", data.html); // rendered and escaped by the server
    var added = document.getElementById("m" + data.id);
    if (added) added.classList.add("fresh");
  });
  source.addEventListener("deliveries", function (event) {
    var parts = JSON.parse(event.data);
    Object.keys(parts).forEach(function (id) {
      var old = document.getElementById("d" + id);
      if (!old) return;
      var open = old.open;
      old.outerHTML = parts[id];
      var fresh = document.getElementById("d" + id);
      if (fresh) fresh.open = open;
    });
  });
  source.addEventListener("state", function (event) {
    var tag = document.getElementById("state-tag");
    if (tag) tag.outerHTML = JSON.parse(event.data).html; // closed or reopened by someone else
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
