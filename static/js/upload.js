// Upload page: drag-and-drop onto the drop zone, preview the chosen photo, disable the button while sending.
// The drop zone always tells the truth about the file input: when the browser comes back to this page
// (back button, from its cache or with the form restored), the zone shows the file the input still holds,
// or its empty state, and the button is enabled again.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var drop = document.getElementById("drop");
  var input = document.getElementById("image");
  var preview = document.getElementById("preview");
  var text = document.getElementById("drop-text");
  var submit = document.getElementById("submit");
  if (!form || !drop || !input) { return; }
  var emptyText = text.innerHTML;
  var submitText = submit.textContent;

  function show(file) {
    if (preview.src) { URL.revokeObjectURL(preview.src); }
    if (!file) {
      text.innerHTML = emptyText;
      preview.removeAttribute("src");
      preview.hidden = true;
      return;
    }
    text.textContent = file.name + " (" + Math.round(file.size / 1024) + " KB)";
    if (/^image\/(jpeg|png|webp)$/.test(file.type)) {
      preview.src = URL.createObjectURL(file);
      preview.hidden = false;
    } else {
      preview.removeAttribute("src");
      preview.hidden = true;
    }
  }

  function sync() {
    // Back to this page: forget the photo sent before, so that Identify never sends it again unseen.
    form.reset();
    show(null);
    submit.disabled = false;
    submit.textContent = submitText;
  }

  input.addEventListener("change", function () { show(input.files[0]); });
  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (event) {
    var files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      var transfer = new DataTransfer();
      transfer.items.add(files[0]);
      input.files = transfer.files;
      show(files[0]);
    }
  });
  form.addEventListener("submit", function () { submit.disabled = true; submit.textContent = "Uploading…"; });
  // pageshow fires on the first load and on every return (persisted: from the back-forward cache).
  window.addEventListener("pageshow", function (event) {
    if (event.persisted || form.dataset.sent === "1") { sync(); return; }
    if (input.files && input.files.length) { show(input.files[0]); }  // a browser that restored the form
  });
  form.addEventListener("submit", function () { form.dataset.sent = "1"; });
})();
