// Result page: poll the small JSON status endpoint until the job ends, then reload to show the result.
// After data-slow-after seconds without a result, show the "taking longer than usual" notice (#slow).
(function () {
  "use strict";
  var root = document.getElementById("result");
  if (!root || root.dataset.terminal === "1") { return; }
  var url = root.dataset.statusUrl;
  var label = document.getElementById("status-text");
  var slow = document.getElementById("slow");
  var slowAfter = (parseFloat(root.dataset.slowAfter) || 8) * 1000;
  var words = { queued: "Waiting in line…", running: "Identifying the shoe…" };
  var delay = 700;

  window.setTimeout(function () { if (slow) { slow.hidden = false; } }, slowAfter);

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && body.terminal) { window.location.reload(); return; }
        if (body && label && words[body.status]) { label.textContent = words[body.status]; }
        delay = Math.min(delay * 1.3, 4000);
        window.setTimeout(poll, delay);
      })
      .catch(function () { window.setTimeout(poll, 4000); });
  }
  window.setTimeout(poll, delay);
})();
