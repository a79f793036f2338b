// Upload page: drag-and-drop onto the drop zone, preview the chosen photo, disable the button while sending.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var drop = document.getElementById("drop");
  var input = document.getElementById("image");
  var preview = document.getElementById("preview");
  var text = document.getElementById("drop-text");
  var submit = document.getElementById("submit");
  if (!form || !drop || !input) { return; }

  function show(file) {
    if (!file) { return; }
    text.textContent = file.name + " (" + Math.round(file.size / 1024) + " KB)";
    if (/^image\/(jpeg|png|webp)$/.test(file.type)) {
      preview.src = URL.createObjectURL(file);
      preview.hidden = false;
    }
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
})();
