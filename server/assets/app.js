// fieldtally review page: the little that needs a script. Everything works without it; this
// adds "select all", the count of selected rows, and asks for a reason before submitting a
// rejection (the server checks that too).
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  var picks = Array.prototype.slice.call(document.querySelectorAll("input.pick"));
  var shown = document.getElementById("picked");
  function count() {
    if (shown) shown.textContent = String(picks.filter(function (p) { return p.checked; }).length);
  }
  if (all) {
    all.addEventListener("change", function () {
      picks.forEach(function (p) { p.checked = all.checked; });
      count();
    });
  }
  picks.forEach(function (p) { p.addEventListener("change", count); });
  count();

  var review = document.querySelector("form.review");
  if (review) {
    review.addEventListener("submit", function (e) {
      var button = e.submitter;
      var comment = document.getElementById("review-comment");
      var needed = document.getElementById("comment-needed");
      if (button && button.value !== "approved" && comment && !comment.value.trim()) {
        e.preventDefault();
        if (needed) needed.hidden = false;
        comment.focus();
      }
    });
  }
})();
