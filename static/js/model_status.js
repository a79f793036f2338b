// "No model yet" banner (templates/registry/_model_status.html): poll /models/status.json and show the
// training's stage, photos done of total and time left; when a model is active, say so.
(function () {
  "use strict";
  var root = document.getElementById("model-status");
  if (!root) { return; }
  var url = root.dataset.url;
  var title = document.getElementById("model-status-title");
  var text = document.getElementById("model-status-text");
  var bar = document.getElementById("model-status-bar");
  var delay = 3000;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    if (seconds < 60) { return "under a minute"; }
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) { return "about " + minutes + " minute" + (minutes === 1 ? "" : "s"); }
    var rest = minutes % 60;
    return "about " + Math.floor(minutes / 60) + " h " + (rest < 10 ? "0" : "") + rest + " min";
  }

  function describe(run) {
    if (!run) { return "No training has been started yet."; }
    if (run.status === "pending") { return "Waiting for the training worker to start."; }
    if (run.status === "failed") { return "Our staff have been told and will start it again."; }
    if (run.status !== "running" || !run.stage) { return "Training is starting."; }
    var line = "Step " + (run.step || "?") + " of " + run.steps + ": " + run.stage_label;
    if (run.total > 1) { line += ", " + run.done + " of " + run.total + " " + run.unit; }
    if (run.eta_seconds !== null && run.eta_seconds !== undefined) {
      line += " (" + duration(run.eta_seconds) + " left in this step)";
    }
    return line + ".";
  }

  function show(body) {
    if (body.ready) {
      title.textContent = "The shoe recognition model is ready.";
      text.textContent = "Photos uploaded while it trained are being answered now.";
      bar.hidden = true;
      return false;
    }
    var run = body.run;
    title.textContent = run && run.status === "failed"
      ? "The shoe recognition model is not ready: its training stopped."
      : "The shoe recognition model is still being trained.";
    text.textContent = describe(run);
    if (run && run.total > 1) {
      bar.max = run.total;
      bar.value = run.done;
      bar.hidden = false;
    } else {
      bar.hidden = true;
    }
    return true;
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body && !show(body)) { return; }
        delay = 3000;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);
        window.setTimeout(poll, delay);
      });
  }
  window.setTimeout(poll, delay);
})();
