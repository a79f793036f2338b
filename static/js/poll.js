// Result page: poll the small JSON status endpoint until the job ends, then reload to show the result.
(function () {
  "use strict";
  var root = document.getElementById("result");
  if (!root || root.dataset.terminal === "1") { return; }
  var url = root.dataset.statusUrl;
  var label = document.getElementById("status-text");
  var delay = 700;

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && body.terminal) { window.location.reload(); return; }
        if (body && label) { label.textContent = "Status: " + body.status; }
        delay = Math.min(delay * 1.3, 4000);
        window.setTimeout(poll, delay);
      })
      .catch(function () { window.setTimeout(poll, 4000); });
  }
  window.setTimeout(poll, delay);
})();
