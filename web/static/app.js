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
    // Folded filters (a phone's first screen is for results) open by themselves on wide screens.
    if (window.matchMedia && window.matchMedia("(min-width: 768px)").matches) {
      document.querySelectorAll("details.filter-fold").forEach(function (d) { d.open = true; });
    }
  });

  // A form that changes who holds something asks first: data-confirm, "{choice}" naming the selected option.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form && form.getAttribute ? form.getAttribute("data-confirm") : null;
    if (!message) { return; }
    var select = form.querySelector("select");
    var choice = select && select.selectedIndex >= 0 ? select.options[select.selectedIndex].text : "";
    if (!window.confirm(message.replace("{choice}", choice))) { event.preventDefault(); }
  });

  // Industry fields: typing words lists matching GB/T 4754 rows (软件开发 → I6513 应用软件开发) in the datalist.
  var industryTimer = null;
  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!input || !input.getAttribute || !input.getAttribute("data-industry-search")) { return; }
    var list = document.getElementById(input.getAttribute("list"));
    var query = input.value.trim();
    if (!list || query.length < 1 || /^[A-Za-z]?\d*$/.test(query) && query.length < 2) { return; }
    window.clearTimeout(industryTimer);
    industryTimer = window.setTimeout(function () {
      var url = input.getAttribute("data-industry-search") + "?limit=30&q=" + encodeURIComponent(query);
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (rows) {
          if (input.value.trim() !== query || !rows.length) { return; }
          while (list.firstChild) { list.removeChild(list.firstChild); }
          rows.forEach(function (row) {
            var option = document.createElement("option");
            option.value = row.code;
            option.textContent = row.code + " " + row.name + "（" + row.level + "）";
            option.label = row.name + "（" + row.level + "）";
            list.appendChild(option);
          });
        })
        .catch(function () { /* the field still takes a name or a code without the list */ });
    }, 150);
  });

  // A form answered with errors by htmx: focus the error summary, as on a full page.
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    var summary = document.getElementById("error-summary");
    if (summary && target && (target === summary || target.contains(summary) || !document.body.contains(target))) {
      summary.focus();
    }
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

  // A feedback box is replaced after a click: put keyboard focus back on the chosen button (or, once the
  // firm applied and the box became the application's status, on its link).
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
    var chosen = box ? box.querySelector('[aria-pressed="true"]') || box.querySelector("a") : null;
    if (chosen) { chosen.focus(); }
  });
})();
