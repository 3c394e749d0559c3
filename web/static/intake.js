// The editor's intake review: after a decision (htmx swaps the review card) the editor's inputs the
// decision changed on the server are set to the saved values, and the rule builder re-reads its JSON
// (the "input" event it listens for), so saving the form afterwards keeps what was decided.
(function () {
  "use strict";

  document.addEventListener("htmx:afterSwap", function () {
    var card = document.getElementById("intake-review");
    if (!card || !card.dataset.sync) { return; }
    var values;
    try { values = JSON.parse(card.dataset.sync); } catch (err) { return; }
    delete card.dataset.sync;
    Object.keys(values).forEach(function (id) {
      var input = document.getElementById(id);
      if (!input || input.value === values[id]) { return; }
      input.value = values[id];
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
  });
})();
