// Small progressive enhancement for the Huiqi pages; everything also works without JavaScript.
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // A refused form: move focus to its error summary, which links to each field.
  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.getElementById("error-summary");
    if (summary) { summary.focus(); }
  });

  // No inline handlers (the Content-Security-Policy forbids them): a filter <select data-autosubmit>
  // sends its form when changed, and a form or button with data-confirm asks before it is sent.
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field && field.matches && field.matches("select[data-autosubmit]") && field.form) {
      field.form.requestSubmit();
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    var question = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  // Every htmx request carries the CSRF token (the server checks it on POST, PUT, PATCH, DELETE).
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // Show the server's Chinese error page when an htmx request is refused, instead of failing silently.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status >= 400 && (xhr.getResponseHeader("content-type") || "").indexOf("text/html") === 0) {
      event.detail.shouldSwap = false;
      document.open();
      document.write(xhr.responseText);
      document.close();
    }
  });

  // A feedback box is replaced after a click: put keyboard focus back on the chosen button.
  var pendingFeedback = null;
  document.addEventListener("htmx:beforeRequest", function (event) {
    var box = event.detail.elt && event.detail.elt.closest ? event.detail.elt.closest(".feedback") : null;
    pendingFeedback = box ? box.id : null;
  });
  // afterSwap runs in the same task as the swap, so focus never lands on <body> in between.
  document.addEventListener("htmx:afterSwap", function () {
    if (!pendingFeedback) { return; }
    var box = document.getElementById(pendingFeedback);
    pendingFeedback = null;
    var chosen = box ? box.querySelector('[aria-pressed="true"]') : null;
    if (chosen) { chosen.focus(); }
  });
})();
