// The dashboard's only script: live status and progress from /events, and the remembered action token.
"use strict";
(function () {
  var base = document.body.dataset.base || "";

  // The token typed into a confirmation is kept for this tab only.
  var field = document.querySelector("input[name=token]");
  if (field) {
    var saved = sessionStorage.getItem("sequencer-token");
    if (saved) field.value = saved;
    field.form.addEventListener("submit", function () {
      sessionStorage.setItem("sequencer-token", field.value);
    });
  }

  var rows = document.querySelectorAll("tr[data-op]");
  if (!rows.length || !window.EventSource) return;
  var byName = {};
  rows.forEach(function (tr) { byName[tr.dataset.op] = tr; });

  function bar(op) {
    var span = document.createElement("span");
    span.className = "progress";
    if (op.total > 0 && op.done !== null) {
      var p = document.createElement("progress");
      p.max = op.total; p.value = op.done;
      var pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = Math.round(op.done / op.total * 100) + "% (" + op.done + "/" + op.total + ")";
      var eta = document.createElement("span");
      eta.className = "eta";
      eta.textContent = op.eta ? "ETA " + op.eta : "";
      span.append(p, pct, eta);
    }
    return span;
  }

  var source = new EventSource(base + "/events");
  source.addEventListener("status", function (ev) {
    JSON.parse(ev.data).forEach(function (op) {
      var tr = byName[op.name];
      if (!tr) return;
      var badge = tr.querySelector("td.status .badge");
      if (badge && badge.dataset.status !== op.status) {
        badge.dataset.status = op.status;
        badge.className = "badge s-" + op.status;
        badge.textContent = op.status;
      }
      var cell = tr.querySelector("td.prog");
      if (cell) cell.replaceChildren(bar(op));
    });
  });
})();
