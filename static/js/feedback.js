// Result page correction form: the model list shows the chosen brand's models; picking a model picks its brand.
(function () {
  "use strict";
  var brand = document.getElementById("fb-brand");
  var model = document.getElementById("fb-model");
  if (!brand || !model) { return; }
  var groups = Array.prototype.slice.call(model.querySelectorAll("optgroup"));

  function filter() {
    groups.forEach(function (group) {
      var shown = !brand.value || group.dataset.brand === brand.value;
      group.hidden = !shown;
      group.disabled = !shown;
    });
    var picked = model.selectedOptions[0];
    if (picked && picked.parentNode.disabled) { model.value = ""; }
  }

  brand.addEventListener("change", filter);
  model.addEventListener("change", function () {
    var picked = model.selectedOptions[0];
    if (picked && picked.parentNode.dataset && picked.parentNode.dataset.brand) {
      brand.value = picked.parentNode.dataset.brand;
    }
  });
  filter();
})();
