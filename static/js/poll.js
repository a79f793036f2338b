// Result page: ask the small JSON status endpoint for the job's end, then reload to show the result.
// Each request long-polls (?wait=20&known=STATUS: the server answers as soon as the job ends or its status moves
// on from the one shown, e.g. queued -> running, or after 20 s), so the page learns of the result the moment it
// exists. When the server answers early with nothing new (all its waiting slots busy, or an error), the page
// falls back to polling: 150 ms, then each wait 1.3 times the last, 4 s at most. After data-slow-after seconds
// without a result, show the "taking longer than usual" notice (#slow).
(function () {
  "use strict";
  var root = document.getElementById("result");
  if (!root || root.dataset.terminal === "1") { return; }
  var base = root.dataset.statusUrl + "?wait=20&known=";
  var known = root.dataset.status || "";
  var label = document.getElementById("status-text");
  var slow = document.getElementById("slow");
  var slowAfter = (parseFloat(root.dataset.slowAfter) || 8) * 1000;
  var words = { queued: "Waiting in line…", running: "Identifying the shoe…" };
  var delay = 150;

  window.setTimeout(function () { if (slow) { slow.hidden = false; } }, slowAfter);

  function again(started, moved) {
    // News (a new status) or a held request that ran its course: ask again at once; an early answer backs off.
    if (moved || Date.now() - started >= 15000) { window.setTimeout(poll, 0); return; }
    window.setTimeout(poll, delay);
    delay = Math.min(delay * 1.3, 4000);
  }

  function poll() {
    var started = Date.now();
    fetch(base + encodeURIComponent(known), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && body.terminal) { window.location.reload(); return; }
        var moved = Boolean(body && body.status && body.status !== known);
        if (moved) { known = body.status; }
        if (body && label && words[body.status]) { label.textContent = words[body.status]; }
        again(started, moved);
      })
      .catch(function () { window.setTimeout(poll, 4000); });
  }
  poll();
})();
