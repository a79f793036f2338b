// Product page: a thumbnail shows its photo in the main frame (without script, the link opens the photo).
(function () {
  "use strict";
  var main = document.querySelector(".main-photo");
  if (!main) { return; }
  document.querySelectorAll(".thumbs a.thumb").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var img = link.querySelector("img");
      main.setAttribute("src", link.getAttribute("href"));
      main.setAttribute("width", img.getAttribute("width"));
      main.setAttribute("height", img.getAttribute("height"));
      document.querySelectorAll(".thumbs a.current").forEach(function (other) { other.classList.remove("current"); });
      link.classList.add("current");
    });
  });
})();
