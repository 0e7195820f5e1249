/* PowerX console: local times, time-zone fields, ignore-form hints, scan progress. No dependencies. */
(function () {
  "use strict";

  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }

  var formatter = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });

  /* <time datetime="...Z">: show the viewer's local time, keep UTC in the tooltip. */
  function localiseTimes(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      var when = new Date(t.getAttribute("datetime"));
      if (isNaN(when.getTime())) { continue; }
      if (!t.title) { t.title = t.textContent; }
      t.textContent = formatter.format(when);
      t.setAttribute("data-local", "1");
    }
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localInputValue(d, withTime) {
    var date = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate());
    return withTime ? date + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes()) : date;
  }

  function fillZoneFields() {
    var fields = document.querySelectorAll('input[name="tz"]');
    for (var i = 0; i < fields.length; i++) { fields[i].value = zone; }
    var labels = document.querySelectorAll("[data-zone-label]");
    for (var j = 0; j < labels.length; j++) { labels[j].textContent = zone ? " (" + zone + ")" : ""; }
    var now = new Date();
    var pickers = document.querySelectorAll("input[data-min-now]");
    for (var k = 0; k < pickers.length; k++) {
      pickers[k].min = localInputValue(now, pickers[k].type === "datetime-local");
    }
  }

  /* The dated ignore scopes need an expiry date. */
  function wireIgnoreForms() {
    var forms = document.querySelectorAll("form[data-ignore-form]");
    Array.prototype.forEach.call(forms, function (form) {
      var until = form.querySelector('input[name="until"]');
      function sync() {
        var picked = form.querySelector('input[name="scope"]:checked');
        until.required = !!picked && picked.value !== "target";
      }
      Array.prototype.forEach.call(form.querySelectorAll('input[name="scope"]'), function (r) {
        r.addEventListener("change", sync);
      });
      sync();
    });
  }

  function wireConfirmations() {
    var forms = document.querySelectorAll("form[data-confirm]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  /* Scan page: poll the status JSON until the scan has finished, then reload the page. */
  function followScan() {
    var panel = document.querySelector("[data-scan-status-url]");
    if (!panel) { return; }
    var url = panel.getAttribute("data-scan-status-url");
    var status = panel.querySelector('[data-field="status"]');
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (scan) {
          status.textContent = scan.status;
          status.className = "status status-" + scan.status;
          if (scan.finished) { window.location.reload(); } else { window.setTimeout(poll, 1000); }
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    }
    window.setTimeout(poll, 500);
  }

  function start() {
    localiseTimes(document);
    fillZoneFields();
    wireIgnoreForms();
    wireConfirmations();
    followScan();
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
