// Result page: poll the small JSON status endpoint until the job ends, then reload to show the result.
// After data-slow-after seconds without a result, show the "taking longer than usual" notice (#slow).
// The first poll comes 150 ms after the page loads (a real-world photo takes about 0.2-0.4 s on two
// idle cores, a catalogue shot less), then each wait is 1.3 times the last, 4 s at most: polls at
// 0.15, 0.35, 0.6, 0.93, 1.36 s ... so a result is seen at most about a third later than it exists,
// for a handful of small requests per photo (benchmarks/bench_speed.py polls the same way).
(function () {
  "use strict";
  var root = document.getElementById("result");
  if (!root || root.dataset.terminal === "1") { return; }
  var url = root.dataset.statusUrl;
  var label = document.getElementById("status-text");
  var slow = document.getElementById("slow");
  var slowAfter = (parseFloat(root.dataset.slowAfter) || 8) * 1000;
  var words = { queued: "Waiting in line…", running: "Identifying the shoe…" };
  var delay = 150;

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
