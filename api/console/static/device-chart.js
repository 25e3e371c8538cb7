// The device page's readings: one uPlot chart per metric on a shared, zoomable time axis,
// with a dashed line at each ticket's opening. Data come from the API's telemetry route.
(function () {
  "use strict";

  const COLOURS = ["#0b5cad", "#a3410b", "#1d7a3a", "#7a2d99", "#8a6a00", "#0d6e75"];
  const POINTS = 720;

  function markerPlugin(markers) {
    return {
      hooks: {
        draw: [function (u) {
          const ctx = u.ctx;
          ctx.save();
          ctx.setLineDash([6, 4]);
          ctx.lineWidth = 2 * devicePixelRatio;
          ctx.strokeStyle = "#b3261e";
          for (const m of markers) {
            const x = u.valToPos(Date.parse(m.at) / 1000, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
  }

  function range(form, periodS) {
    const start = form.elements.start.value;
    const end = form.elements.end.value;
    if (start && end && new Date(end) > new Date(start)) {
      return [new Date(start), new Date(end)];
    }
    const until = new Date();
    return [new Date(until.getTime() - periodS * 1000), until];
  }

  function periodSeconds(form, fallback) {
    const chosen = form.querySelector("input[name=period]:checked");
    const table = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };
    return chosen ? table[chosen.value] : fallback;
  }

  function draw(box, config, data, markers, start, end) {
    box.innerHTML = "";
    const syncKey = "device-" + config.device;
    const times = data.rows.map(function (r) { return r[0] / 1000; });
    const width = Math.max(280, box.clientWidth - 8);
    const charts = [];
    data.columns.slice(1).forEach(function (metric, i) {
      const values = data.rows.map(function (r) { return r[i + 1]; });
      const figure = document.createElement("figure");
      figure.className = "chart";
      figure.setAttribute("role", "group");
      const caption = document.createElement("figcaption");
      const last = values.filter(function (v) { return v !== null; }).slice(-1)[0];
      caption.textContent = metric + (last !== undefined ? " (latest " + last.toFixed(2) + ")" : "");
      figure.appendChild(caption);
      box.appendChild(figure);
      const plot = new uPlot({
        width: width, height: 180,
        cursor: { sync: { key: syncKey }, drag: { x: true, y: false } },
        scales: { x: { time: true } },
        legend: { show: false },
        axes: [{ stroke: "#333" }, { stroke: "#333", size: 60 }],
        series: [{}, { label: metric, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: false }],
        plugins: [markerPlugin(markers)],
      }, [times, values], figure);
      // Show the whole window asked for, not only the part with data, so markers in a
      // quiet stretch stay visible; a double-click zooms back out to the data.
      plot.setScale("x", { min: start.getTime() / 1000, max: end.getTime() / 1000 });
      plot.root.setAttribute("aria-label", "Chart of " + metric);
      plot.root.setAttribute("role", "img");
      charts.push(plot);
    });
    if (!charts.length) {
      box.innerHTML = "<p>No readings in this period.</p>";
    }
    box.dataset.drawn = String(charts.length);
    return charts;
  }

  function load(box, form, config) {
    let start, end;
    if (form) {
      [start, end] = range(form, periodSeconds(form, config.period_s));
    } else {
      // A fixed window, such as the readings around a ticket.
      start = new Date(config.start);
      end = new Date(config.end);
    }
    const span = (end - start) / 1000;
    const resolution = Math.max(1, Math.round(span / POINTS));
    const params = new URLSearchParams({
      start: start.toISOString(), end: end.toISOString(), resolution_s: String(resolution),
    });
    const url = config.telemetry + "?" + params.toString();
    const csv = document.getElementById("csv-link");
    if (csv) csv.href = url + "&format=csv";
    box.setAttribute("aria-busy", "true");
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error("status " + r.status);
        return r.json();
      })
      .then(function (data) { draw(box, config, data, config.markers, start, end); })
      .catch(function () {
        box.innerHTML = "<p class=\"notice error\" role=\"alert\">The readings could not be loaded.</p>";
        box.dataset.drawn = "error";
      })
      .finally(function () { box.setAttribute("aria-busy", "false"); });
  }

  function init() {
    const box = document.getElementById("charts");
    if (!box || box.dataset.drawn !== undefined || typeof uPlot === "undefined") return;
    const form = document.getElementById("period-form");
    const config = JSON.parse(box.dataset.chart);
    box.dataset.drawn = "";
    if (!form) {
      load(box, null, config);
      return;
    }
    form.addEventListener("change", function (event) {
      if (event.target.name === "period") {
        form.elements.start.value = "";
        form.elements.end.value = "";
        load(box, form, config);
      }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      load(box, form, config);
    });
    load(box, form, config);
  }

  document.addEventListener("DOMContentLoaded", init);
  // The ticket page swaps its body after each action: draw the new chart.
  document.addEventListener("htmx:afterSettle", init);
})();
