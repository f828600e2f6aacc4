// larder's dashboard: draws the plots of a cache's history with uPlot.
// The page works without it; only the plots need it.
"use strict";

(function () {
  function bytes(n) {
    if (n == null) return "";
    var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }
  function count(n) { return n == null ? "" : Math.round(n).toLocaleString(); }
  function ratio(n) { return n == null ? "" : (n * 100).toFixed(0) + "%"; }
  var formats = { bytes: bytes, paths: count, requests: count, hitRatio: ratio };

  function draw(el, data, t) {
    var key = el.dataset.series, fmt = formats[key] || count;
    var width = Math.max(200, el.clientWidth);
    var opts = {
      title: el.dataset.label,
      width: width,
      height: 180,
      cursor: { drag: { x: false, y: false } },
      legend: { show: true },
      scales: key === "hitRatio" ? { y: { range: [0, 1] } } : {},
      series: [
        {},
        { label: el.dataset.label, stroke: "#2f6f4f", fill: "rgba(47,111,79,0.12)", width: 2, spanGaps: false,
          value: function (u, v) { return fmt(v); }, points: { show: t.length < 3 } }
      ],
      axes: [{}, { size: 70, values: function (u, vals) { return vals.map(fmt); } }]
    };
    var plot = new uPlot(opts, [t, data[key]], el);
    return plot;
  }

  function start() {
    var box = document.getElementById("plots");
    if (!box || typeof uPlot === "undefined") return;
    fetch(box.dataset.history, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("history: " + r.status);
        return r.json();
      })
      .then(function (data) {
        var plots = [];
        box.querySelectorAll(".plot").forEach(function (el) { plots.push([el, draw(el, data, data.t)]); });
        box.classList.add("drawn");
        var pending = 0;
        window.addEventListener("resize", function () {
          clearTimeout(pending);
          pending = setTimeout(function () {
            plots.forEach(function (p) { p[1].setSize({ width: Math.max(200, p[0].clientWidth), height: 180 }); });
          }, 100);
        });
      })
      .catch(function (err) {
        var p = box.querySelector(".nojs");
        if (p) p.textContent = "The history could not be loaded.";
        console.warn(err);
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
