// Progressive enhancement: the pages work without JavaScript (tables); this draws
// the overview's charts with uPlot (vendored in this folder) from #chart-data.
(function () {
  "use strict";
  var PALETTE = ["#2457c5", "#d9822b", "#1f7a3a", "#b3261e", "#7b4fc9", "#0f8b8d",
                 "#a4508b", "#5d6675", "#c9a227", "#3d8bfd"];

  function draw(el, data, name) {
    var groups = data[name] || {};
    var labels = Object.keys(groups);
    var rows = [data.x];
    var series = [{}];
    labels.forEach(function (label, i) {
      rows.push(groups[label]);
      var color = PALETTE[i % PALETTE.length];
      series.push({ label: label, stroke: color, fill: color + "22", width: 2,
                    value: function (u, v) { return v == null ? "–" : (name === "spend" ? "$" + v.toFixed(6) : String(v)); } });
    });
    if (labels.length === 0) {
      el.textContent = "No data in this range.";
      el.classList.add("hint");
      return;
    }
    var opts = {
      width: Math.max(280, el.clientWidth), height: 240, series: series,
      scales: { x: { time: true } },
      axes: [{}, { size: 84, values: function (u, vals) {
        return vals.map(function (v) { return name === "spend" ? "$" + v : v; }); } }],
      legend: { live: true }
    };
    var plot = new uPlot(opts, rows, el);
    el.setAttribute("data-points", String(data.x.length * labels.length));
    (window.tollwayCharts = window.tollwayCharts || []).push(plot);
    window.addEventListener("resize", function () {
      plot.setSize({ width: Math.max(280, el.clientWidth), height: 240 });
    });
  }

  function init() {
    var source = document.getElementById("chart-data");
    if (!source || typeof uPlot === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    document.querySelectorAll(".chart[data-series]").forEach(function (el) {
      draw(el, data, el.getAttribute("data-series"));
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
  else { init(); }
})();
