/* tickbridge dashboard, research views (issue 19): the sweeps list and form (/sweeps), a sweep's
 * heatmap and ranked table (/sweeps/{id}), and the Monte Carlo fan under a backtest's report
 * (/backtests/{id}). Served next to dashboard.js on every page; acts only on those three views.
 *
 * It calls the API through dashboard.js's session (window.tickbridge: the one access token, its
 * refresh and api()), so a page holds one token and rotates the refresh cookie once. On its own
 * views it takes over #main with a fresh
 * element (dashboard.js knows nothing of them). Data reaches the DOM through textContent and
 * attributes only; charts are SVG drawn here (presentation attributes, no inline style). */
(function () {
  "use strict";
  var view = document.body.getAttribute("data-view");
  var arg = document.body.getAttribute("data-arg");
  var SVG = "http://www.w3.org/2000/svg";
  var OWN = { sweeps: true, sweep: true };

  var shared = window.tickbridge || {};  // dashboard.js: the session, api() and el()
  var el = shared.el, api = shared.api, say = shared.say;

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function num(v) { return v === null || v === undefined || v === "" ? null : Number(v); }

  function fmt(v) {
    if (v === null || v === undefined) { return "n/a"; }
    if (typeof v !== "number") { return String(v); }
    if (!isFinite(v)) { return "n/a"; }
    return Number.isInteger(v) ? v.toLocaleString("en-US") : Number(v.toPrecision(5)).toLocaleString("en-US", { maximumFractionDigits: 10 });
  }

  function table(caption, columns, rows, cells, attrs) {
    var t = el("table", Object.assign({ "class": "tb-table" }, attrs || {}));
    t.appendChild(el("caption", {}, caption));
    var head = el("tr");
    columns.forEach(function (c) { head.appendChild(el("th", { scope: "col" }, c)); });
    var thead = el("thead"); thead.appendChild(head); t.appendChild(thead);
    var body = el("tbody");
    rows.forEach(function (row, i) {
      var tr = el("tr");
      cells(row, i).forEach(function (v) {
        if (v instanceof Node) { var td = el("td"); td.appendChild(v); tr.appendChild(td); } else { tr.appendChild(el("td", {}, v)); }
      });
      body.appendChild(tr);
    });
    t.appendChild(body);
    return t;
  }

  function takeMain() {
    /* a fresh #main: whatever dashboard.js writes into the old one (it has no page for this view)
     * stays off the page */
    var old = document.getElementById("main");
    var main = el("main", { id: "main", tabindex: "-1", "data-research": view });
    old.replaceWith(main);
    return main;
  }

  /* --- the sweeps list and its form --- */

  var FIELDS = [
    ["strategy", "strategy", "text", "sma_cross", "an installed strategy with vectorised signals"],
    ["data", "data file", "text", "stocks/SPY_daily.csv", "a file under data/"],
    ["bar", "bar size (tick files)", "text", "", "e.g. 1min; empty for a bar file"],
    ["objective", "objective", "text", "sharpe", "the statistic the ranking maximises"],
    ["grid", "grid", "textarea", "fast=5:30:5\nslow=40,60,80", "one parameter a line: name=start:stop:step or name=a,b,c (at most 500 combinations)"],
    ["params", "fixed parameters", "textarea", "", "one a line: name=value"],
    ["cash", "cash", "text", "10000", ""],
    ["commission", "commission (fraction of notional)", "text", "0", ""],
    ["slippage_bps", "slippage (basis points)", "text", "0", ""]
  ];

  function lines(text) {
    var out = {};
    text.split("\n").forEach(function (line) {
      line = line.trim();
      if (!line) { return; }
      var at = line.indexOf("=");
      out[at < 0 ? line : line.slice(0, at).trim()] = at < 0 ? "" : line.slice(at + 1).trim();
    });
    return out;
  }

  function scalar(text) {
    if (text === "true" || text === "false") { return text === "true"; }
    return text !== "" && !isNaN(Number(text)) ? Number(text) : text;
  }

  function fieldOf(apiField) {
    /* the form control an API error names: grid.fast -> grid, settings.cash -> cash */
    if (!apiField) { return null; }
    var head = apiField.split(".")[0];
    if (head === "settings") { var key = apiField.split(".")[1]; return FIELDS.some(function (f) { return f[0] === key; }) ? key : "settings"; }
    return FIELDS.some(function (f) { return f[0] === head; }) ? head : null;
  }

  function sweepForm(onDone) {
    var form = el("form", { id: "sweep-form", "class": "research-form", "aria-labelledby": "sweep-form-title", novalidate: "" });
    form.appendChild(el("h2", { id: "sweep-form-title" }, "new sweep"));
    var errors = {};
    FIELDS.forEach(function (f) {
      var id = "sweep-" + f[0];
      var row = el("div", { "class": "field" });
      row.appendChild(el("label", { "for": id }, f[1]));
      var input = f[2] === "textarea" ? el("textarea", { id: id, name: f[0], rows: "3", "aria-describedby": id + "-hint " + id + "-error" })
                                      : el("input", { id: id, name: f[0], type: "text", "aria-describedby": id + "-hint " + id + "-error" });
      input.value = f[3];
      row.appendChild(input);
      row.appendChild(el("small", { id: id + "-hint" }, f[4]));
      errors[f[0]] = el("p", { id: id + "-error", "class": "error field-error", "data-field": f[0] }, "");
      row.appendChild(errors[f[0]]);
      form.appendChild(row);
    });
    var general = el("p", { id: "sweep-form-error", "class": "error", role: "alert" }, "");
    var submit = el("button", { type: "submit", id: "sweep-submit" }, "run the sweep");
    form.appendChild(submit);
    form.appendChild(general);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      Object.keys(errors).forEach(function (k) { errors[k].textContent = ""; form.elements[k].removeAttribute("aria-invalid"); });
      general.textContent = "";
      var v = function (k) { return form.elements[k].value.trim(); };
      var params = lines(v("params"));
      Object.keys(params).forEach(function (k) { params[k] = scalar(params[k]); });
      var settings = {};
      ["cash", "commission", "slippage_bps"].forEach(function (k) { if (v(k)) { settings[k] = v(k); } });
      var body = { strategy: v("strategy"), data: v("data"), objective: v("objective") || "sharpe",
                   grid: lines(form.elements.grid.value), params: params, settings: settings };
      if (v("bar")) { body.bar = v("bar"); }
      submit.disabled = true;
      api("/sweeps", { method: "POST", body: body }).then(function (job) {
        say("sweep " + job.id.slice(0, 12) + " queued");
        onDone(job);
      }, function (error) {
        var field = fieldOf(error.field);
        if (field && errors[field]) {
          errors[field].textContent = (error.field !== field ? error.field + ": " : "") + error.message;
          form.elements[field].setAttribute("aria-invalid", "true");
          form.elements[field].focus();
        } else {
          general.textContent = (error.field ? error.field + ": " : "") + error.message;
        }
      }).then(function () { submit.disabled = false; });
    });
    return form;
  }

  function gridText(grid) {
    return Object.keys(grid || {}).map(function (k) {
      var g = grid[k]; return k + "=" + (Array.isArray(g) ? g.join(",") : g);
    }).join(" ");
  }

  function sweepsPage(main) {
    main.appendChild(el("h1", {}, "sweeps"));
    var list = el("div", { id: "sweep-jobs" });
    main.appendChild(list);
    var timer = null;
    function show() {
      return api("/sweeps").then(function (jobs) {
        var t = table(jobs.length + " sweep jobs, newest first", ["job", "strategy", "data", "grid", "status", "submitted", "finished", "error"], jobs,
          function (j) {
            var r = j.request || {};
            return [el("a", { href: "/sweeps/" + encodeURIComponent(j.id) }, j.id.slice(0, 12)), r.strategy, r.data, gridText(r.grid),
                    j.status, j.created_at, j.finished_at, j.error];
          }, { id: "sweep-list" });
        list.textContent = "";
        list.appendChild(t);
        clearTimeout(timer);
        if (jobs.some(function (j) { return j.status === "queued" || j.status === "running"; })) { timer = setTimeout(show, 2000); }
      });
    }
    main.appendChild(sweepForm(function (job) { location.assign("/sweeps/" + encodeURIComponent(job.id)); }));
    return show();
  }

  /* --- a sweep: heatmap and ranked table --- */

  var PALETTE = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];  // viridis stops

  function colour(t) {
    if (t === null) { return "#d0d0d0"; }
    var x = Math.max(0, Math.min(1, t)) * (PALETTE.length - 1), i = Math.min(PALETTE.length - 2, Math.floor(x)), f = x - i;
    var c = PALETTE[i].map(function (a, k) { return Math.round(a + (PALETTE[i + 1][k] - a) * f); });
    return "rgb(" + c.join(",") + ")";
  }

  function distinct(values) {
    var seen = {}, out = [];
    values.forEach(function (v) { var k = JSON.stringify(v); if (!seen[k]) { seen[k] = true; out.push(v); } });
    return out.sort(function (a, b) { return typeof a === "number" && typeof b === "number" ? a - b : String(a) < String(b) ? -1 : 1; });
  }

  function cellsOf(results, xName, yName, stat) {
    /* the best value of `stat` per (x, y) over the other parameters, as backtest/heatmap.py takes it */
    var best = {};
    results.forEach(function (r) {
      var key = JSON.stringify([r.params[xName], yName ? r.params[yName] : null]);
      var v = num(r.stats[stat]);
      if (v !== null && !isFinite(v)) { v = null; }
      if (!(key in best) || (v !== null && (best[key].value === null || v > best[key].value))) { best[key] = { value: v, row: r }; }
    });
    return best;
  }

  function heatmap(box, doc, xName, yName, stat, readout) {
    box.textContent = "";
    var results = doc.results || [];
    var xs = distinct(results.map(function (r) { return r.params[xName]; }));
    var ys = yName ? distinct(results.map(function (r) { return r.params[yName]; })) : [null];
    var best = cellsOf(results, xName, yName, stat);
    var values = Object.keys(best).map(function (k) { return best[k].value; }).filter(function (v) { return v !== null; });
    var lo = values.length ? Math.min.apply(null, values) : 0, hi = values.length ? Math.max.apply(null, values) : 1;
    var cw = Math.max(18, Math.min(60, Math.floor(640 / xs.length))), ch = Math.max(18, Math.min(40, Math.floor(360 / ys.length)));
    var left = 70, top = 10, width = left + cw * xs.length + 20, height = top + ch * ys.length + 60;
    var others = Object.keys(doc.grid || {}).filter(function (n) { return n !== xName && n !== yName; });
    var label = stat + " over " + xName + (yName ? " and " + yName : "") + (others.length ? " (best over " + others.join(", ") + ")" : "");
    var chart = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "grid",
                             "aria-label": label + ": arrow keys move between cells", id: "heatmap", "data-cells": xs.length * ys.length });
    chart.appendChild(svg("title", {}, label));
    var cells = [];
    ys.forEach(function (y, j) {
      var row = svg("g", { role: "row" });
      var yPos = top + (ys.length - 1 - j) * ch;  // the first value at the bottom, as in the CLI's heatmap
      xs.forEach(function (x, i) {
        var hit = best[JSON.stringify([x, y])];
        var v = hit ? hit.value : null;
        var name = xName + " " + x + (yName ? ", " + yName + " " + y : "") + ": " + stat + " " + (hit ? fmt(v) : "not run");
        var cell = svg("rect", { x: left + i * cw, y: yPos, width: cw - 1, height: ch - 1, role: "gridcell", tabindex: "-1",
                                 fill: hit ? colour(v === null ? null : hi > lo ? (v - lo) / (hi - lo) : 0.5) : "#ffffff",
                                 stroke: "#ffffff", "aria-label": name, "class": "heat-cell", "data-i": i, "data-j": j,
                                 "data-value": v === null ? "" : String(v) });
        cell.appendChild(svg("title", {}, name));
        function tell() {
          readout.textContent = name;
          cells.forEach(function (c) { c.setAttribute("stroke", "#ffffff"); });
          cell.setAttribute("stroke", "#000000");
          if (hit) { highlight(hit.row); }
        }
        cell.addEventListener("mouseenter", tell);
        cell.addEventListener("focus", tell);
        row.appendChild(cell);
        cells.push(cell);
      });
      chart.appendChild(row);
      chart.appendChild(svg("text", { x: left - 6, y: yPos + ch / 2 + 4, "text-anchor": "end", "font-size": 11, "aria-hidden": "true" }, y === null ? "" : y));
    });
    xs.forEach(function (x, i) {
      chart.appendChild(svg("text", { x: left + i * cw + cw / 2, y: top + ch * ys.length + 14, "text-anchor": "middle", "font-size": 11, "aria-hidden": "true" }, x));
    });
    chart.appendChild(svg("text", { x: left + (cw * xs.length) / 2, y: top + ch * ys.length + 32, "text-anchor": "middle", "font-size": 12, "aria-hidden": "true" }, xName));
    if (yName) {
      chart.appendChild(svg("text", { x: 12, y: top + (ch * ys.length) / 2, "text-anchor": "middle", "font-size": 12, "aria-hidden": "true",
                                      transform: "rotate(-90 12 " + (top + (ch * ys.length) / 2) + ")" }, yName));
    }
    if (cells.length) { cells[0].setAttribute("tabindex", "0"); }
    chart.addEventListener("keydown", function (e) {
      /* a roving tabindex: one Tab stop for the grid, the arrows move within it */
      var at = cells.indexOf(document.activeElement);
      if (at < 0) { return; }
      var i = at % xs.length, j = Math.floor(at / xs.length);
      var moves = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1], Home: [-i, 0], End: [xs.length - 1 - i, 0] };
      var m = moves[e.key];
      if (!m) { return; }
      e.preventDefault();
      var ni = Math.max(0, Math.min(xs.length - 1, i + m[0])), nj = Math.max(0, Math.min(ys.length - 1, j + m[1]));
      var next = cells[nj * xs.length + ni];
      cells[at].setAttribute("tabindex", "-1");
      next.setAttribute("tabindex", "0");
      next.focus();
    });
    box.appendChild(chart);
    box.appendChild(legend(stat, lo, hi, values.length));
  }

  var gradientId = 0;

  function legend(stat, lo, hi, count) {
    var id = "heat-gradient-" + (++gradientId);
    var box = svg("svg", { width: 320, height: 44, viewBox: "0 0 320 44", role: "img", id: "heat-legend",
                           "aria-label": "colour scale: " + stat + " from " + fmt(lo) + " (dark) to " + fmt(hi) + " (light); grey: undefined" });
    var defs = svg("defs");
    var grad = svg("linearGradient", { id: id, x1: "0", x2: "1", y1: "0", y2: "0" });
    PALETTE.forEach(function (c, k) {
      grad.appendChild(svg("stop", { offset: (k / (PALETTE.length - 1)).toFixed(2), "stop-color": "rgb(" + c.join(",") + ")" }));
    });
    defs.appendChild(grad);
    box.appendChild(defs);
    box.appendChild(svg("rect", { x: 10, y: 4, width: 240, height: 14, fill: "url(#" + id + ")" }));
    box.appendChild(svg("rect", { x: 262, y: 4, width: 14, height: 14, fill: colour(null) }));
    box.appendChild(svg("text", { x: 280, y: 15, "font-size": 11 }, "n/a"));
    box.appendChild(svg("text", { x: 10, y: 34, "font-size": 11 }, count ? fmt(lo) : ""));
    box.appendChild(svg("text", { x: 250, y: 34, "font-size": 11, "text-anchor": "end" }, count ? fmt(hi) : ""));
    box.appendChild(svg("text", { x: 130, y: 34, "font-size": 11, "text-anchor": "middle" }, stat));
    return box;
  }

  var highlight = function () {};

  function ranked(doc) {
    var names = Object.keys(doc.grid || {});
    var objective = doc.objective;
    var extra = ["sharpe", "return_pct", "max_drawdown_pct", "trades"].filter(function (k) { return k !== objective; });
    var rows = doc.results || [];
    var t = table("every combination, best " + objective + " first (" + rows.length + " run, " + (doc.skipped || 0) + " refused by the strategy)",
      ["#"].concat(names, [objective], extra), rows,
      function (r, i) {
        return [String(i + 1)].concat(names.map(function (n) { return String(r.params[n]); }), [fmt(num(r.objective))],
                                       extra.map(function (k) { return fmt(num(r.stats[k])); }));
      }, { id: "sweep-ranked" });
    var trs = t.tBodies[0].rows;
    highlight = function (row) {
      var at = rows.indexOf(row);
      for (var k = 0; k < trs.length; k++) { trs[k].classList.toggle("picked", k === at); }
    };
    return t;
  }

  function honesty(doc) {
    var box = el("section", { "class": "honesty", "aria-labelledby": "honesty-title" });
    box.appendChild(el("h2", { id: "honesty-title" }, "how much of the best may be luck"));
    var dl = el("dl", { id: "sweep-honesty" });
    var dsr = (doc.overfitting || {}).dsr || {}, pbo = (doc.overfitting || {}).pbo || {};
    var best = doc.best || {};
    [["best parameters", Object.keys(best.params || {}).map(function (k) { return k + "=" + best.params[k]; }).join(", ")],
     ["best " + doc.objective, fmt(num((best.stats || {})[doc.objective]))],
     ["deflated Sharpe ratio", fmt(num(dsr.deflated_sharpe_ratio))],
     ["Sharpe expected of the best of " + (dsr.trials || "?") + " trials by luck alone (annualised)", fmt(num(dsr.expected_max_sharpe_annualised))],
     ["probability of backtest overfitting (CSCV)", pbo.pbo === null || pbo.pbo === undefined ? (pbo.note || "n/a") : fmt(num(pbo.pbo))],
     ["data", doc.data + " (" + fmt(doc.bars) + " bars)"]]
      .forEach(function (kv) { dl.appendChild(el("dt", {}, kv[0])); dl.appendChild(el("dd", {}, kv[1])); });
    box.appendChild(dl);
    if (doc.note) { box.appendChild(el("p", { role: "note" }, doc.note)); }
    return box;
  }

  function choice(id, label, options, selected) {
    var wrap = el("span", { "class": "choice" });
    wrap.appendChild(el("label", { "for": id }, label));
    var s = el("select", { id: id });
    options.forEach(function (o) { var opt = el("option", { value: o }, o); if (o === selected) { opt.selected = true; } s.appendChild(opt); });
    wrap.appendChild(s);
    return wrap;
  }

  function sweepPage(main, job) {
    var id = encodeURIComponent(job);
    main.appendChild(el("h1", {}, "sweep " + job));
    var state = el("p", { id: "sweep-state", role: "status" }, "");
    main.appendChild(state);
    function wait() {
      return api("/sweeps/" + id).then(function (j) {
        state.textContent = j.status + (j.error ? ": " + j.error : "");
        state.setAttribute("data-status", j.status);
        if (j.status === "queued" || j.status === "running") {
          return new Promise(function (resolve) { setTimeout(resolve, 1000); }).then(wait);
        }
        return j.status === "done" ? api("/sweeps/" + id + "/result").then(function (doc) { draw(main, doc); }) : null;
      });
    }
    return wait();
  }

  function draw(main, doc) {
    var names = Object.keys(doc.grid || {});
    var sample = (doc.results && doc.results[0] && doc.results[0].stats) || {};
    var stats = [doc.objective].concat(Object.keys(sample).filter(function (k) { return k !== doc.objective && typeof sample[k] === "number"; }));
    var pane = el("section", { "class": "heat", "aria-labelledby": "heat-title" });
    pane.appendChild(el("h2", { id: "heat-title" }, "heatmap"));
    var pick = el("div", { "class": "chart-head", role: "group", "aria-label": "what the heatmap shows" });
    var x = choice("heat-x", "across", names, names[0]);
    var y = names.length > 1 ? choice("heat-y", "up", names, names[1]) : null;
    var s = choice("heat-stat", "colour", stats, doc.objective);
    pick.appendChild(x); if (y) { pick.appendChild(y); } pick.appendChild(s);
    pane.appendChild(pick);
    var box = el("div", { id: "heat-box" });
    pane.appendChild(box);
    var readout = el("p", { id: "heat-readout", "aria-live": "polite" }, "hover or focus a cell for its parameters and value");
    pane.appendChild(readout);
    main.appendChild(pane);
    main.appendChild(honesty(doc));
    main.appendChild(ranked(doc));
    function redraw() {
      var xName = x.querySelector("select").value, yName = y ? y.querySelector("select").value : null;
      if (yName === xName) {  // the same parameter on both axes says nothing: take the next one
        yName = names.filter(function (n) { return n !== xName; })[0];
        y.querySelector("select").value = yName;
      }
      heatmap(box, doc, xName, yName, s.querySelector("select").value, readout);
    }
    [x, y, s].forEach(function (c) { if (c) { c.querySelector("select").addEventListener("change", redraw); } });
    redraw();
    main.setAttribute("data-results", String((doc.results || []).length));
  }

  /* --- the Monte Carlo fan under a backtest's report --- */

  var BANDS = [["p5", "p95", "#bbdefb", "5th to 95th percentile"], ["p25", "p75", "#64b5f6", "25th to 75th percentile"]];

  function fanChart(fan, cash) {
    var w = 720, h = 260, left = 70, right = 10, top = 10, bottom = 34;
    var n = fan.trade.length, last = fan.trade[n - 1] || 1;
    var all = fan.p5.concat(fan.p95, [cash]);
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    if (hi === lo) { hi = lo + 1; }
    var X = function (t) { return left + (w - left - right) * t / last; };
    var Y = function (v) { return top + (h - top - bottom) * (1 - (v - lo) / (hi - lo)); };
    var chart = svg("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, role: "img", id: "fan-chart",
                             "aria-labelledby": "fan-title fan-caption", "data-points": n });
    BANDS.forEach(function (b) {
      var up = fan.trade.map(function (t, i) { return X(t).toFixed(1) + "," + Y(fan[b[1]][i]).toFixed(1); });
      var down = fan.trade.map(function (t, i) { return X(t).toFixed(1) + "," + Y(fan[b[0]][i]).toFixed(1); }).reverse();
      chart.appendChild(svg("polygon", { points: up.concat(down).join(" "), fill: b[2], stroke: "none", "class": "fan-band", "data-band": b[0] + "-" + b[1] }));
    });
    chart.appendChild(svg("polyline", { points: fan.trade.map(function (t, i) { return X(t).toFixed(1) + "," + Y(fan.p50[i]).toFixed(1); }).join(" "),
                                        fill: "none", stroke: "#0d47a1", "stroke-width": 2, "class": "fan-median" }));
    chart.appendChild(svg("line", { x1: left, x2: w - right, y1: Y(cash), y2: Y(cash), stroke: "#000000", "stroke-dasharray": "4 3", "stroke-width": 1 }));
    chart.appendChild(svg("line", { x1: left, x2: left, y1: top, y2: h - bottom, stroke: "#777777" }));
    chart.appendChild(svg("line", { x1: left, x2: w - right, y1: h - bottom, y2: h - bottom, stroke: "#777777" }));
    [lo, cash, hi].forEach(function (v) {
      chart.appendChild(svg("text", { x: left - 6, y: Y(v) + 4, "text-anchor": "end", "font-size": 11 }, fmt(Math.round(v))));
    });
    [0, Math.round(last / 2), last].forEach(function (t) {
      chart.appendChild(svg("text", { x: X(t), y: h - bottom + 14, "text-anchor": "middle", "font-size": 11 }, t));
    });
    chart.appendChild(svg("text", { x: left + (w - left - right) / 2, y: h - 4, "text-anchor": "middle", "font-size": 12 }, "trades"));
    return chart;
  }

  function fanTable(fan) {
    var details = el("details", { "class": "fan-table" });
    details.appendChild(el("summary", {}, "the fan as a table"));
    details.appendChild(table("equity percentiles after each trade", ["trade", "5th", "25th", "median", "75th", "95th"], fan.trade,
      function (t, i) { return [String(t)].concat(["p5", "p25", "p50", "p75", "p95"].map(function (p) { return fmt(Math.round(fan[p][i] * 100) / 100); })); }));
    return details;
  }

  function mcSummary(s) {
    var dl = el("dl", { id: "mc-summary", "class": "mc-summary" });
    var q = function (d) { return ["p5", "p50", "p95"].map(function (k) { return fmt(Math.round(d[k] * 100) / 100); }).join(" / "); };
    [["probability of ending " + s.loss_pct + "% or more below the starting cash", fmt(s.prob_loss)],
     ["probability of a drawdown of " + s.loss_pct + "% or more", fmt(s.prob_drawdown)],
     ["final equity, 5th / median / 95th percentile", q(s.final_equity)],
     ["max drawdown %, 5th / median / 95th percentile", q(s.max_drawdown_pct)]]
      .forEach(function (kv) { dl.appendChild(el("dt", {}, kv[0])); dl.appendChild(el("dd", {}, kv[1])); });
    return dl;
  }

  function monteCarlo(job) {
    var box = el("section", { id: "montecarlo", "class": "montecarlo", "aria-labelledby": "fan-title" });
    box.appendChild(el("h2", { id: "fan-title" }, "Monte Carlo: the same trades, resampled"));
    var form = el("form", { "class": "controls", id: "mc-form", "aria-label": "Monte Carlo settings", novalidate: "" });
    var paths = el("input", { id: "mc-paths", type: "number", min: "1", max: "10000", value: "1000" });
    var seed = el("input", { id: "mc-seed", type: "number", min: "0", value: "0" });
    var method = el("select", { id: "mc-method" });
    [["bootstrap", "bootstrap (draw with replacement)"], ["shuffle", "shuffle (reorder)"]].forEach(function (m) { method.appendChild(el("option", { value: m[0] }, m[1])); });
    [["mc-paths", "paths", paths], ["mc-seed", "seed", seed], ["mc-method", "method", method]].forEach(function (c) {
      form.appendChild(el("label", { "for": c[0] }, c[1])); form.appendChild(c[2]);
    });
    form.appendChild(el("button", { type: "submit", id: "mc-run" }, "resample"));
    box.appendChild(form);
    var out = el("div", { id: "mc-out", "aria-live": "polite" });
    box.appendChild(out);
    var status = document.getElementById("status");
    status.parentNode.insertBefore(box, status);
    function run() {
      var query = "?paths=" + encodeURIComponent(paths.value) + "&seed=" + encodeURIComponent(seed.value) + "&method=" + encodeURIComponent(method.value);
      return api("/backtests/" + encodeURIComponent(job) + "/montecarlo" + query).then(function (mc) {
        out.textContent = "";
        out.appendChild(el("p", { id: "fan-caption" }, mc.summary.paths.toLocaleString("en-US") + " paths (" + mc.summary.method + ", seed " + mc.summary.seed +
          ") of " + mc.trades + " trades: the shaded bands hold the middle 50% and 90% of the equity after each trade, the line is the median, the dashed line the starting cash"));
        out.appendChild(fanChart(mc.fan, mc.summary.initial_cash));
        out.appendChild(mcSummary(mc.summary));
        out.appendChild(fanTable(mc.fan));
        box.setAttribute("data-paths", String(mc.summary.paths));
      }, function (e) {
        out.textContent = "";
        out.appendChild(el("p", { role: e.status === 409 ? "status" : "alert", "class": e.status === 409 ? "" : "error" },
                           (e.field ? e.field + ": " : "") + e.message));
      });
    }
    form.addEventListener("submit", function (e) { e.preventDefault(); run(); });
    return run();
  }

  /* --- boot --- */

  var SCRIPT = document.currentScript ? document.currentScript.src : "";

  function boot() {
    if (SCRIPT) {  // our stylesheet, from beside this script (page.html links dashboard.css only)
      document.head.appendChild(el("link", { rel: "stylesheet", href: SCRIPT.replace(/research\.js(\?.*)?$/, "research.css") }));
    }
    var nav = document.getElementById("nav-sweeps");
    var main = OWN[view] ? takeMain() : null;
    if (main) { main.appendChild(el("p", {}, "loading...")); }
    shared.signedIn.then(function (answer) {
      if (nav) { nav.hidden = answer.role === "subscriber"; }  // sweeps are a trader's, like backtests
      if (!OWN[view] && view !== "backtest") { return null; }
      if (view === "backtest") { return monteCarlo(arg); }
      if (nav) { nav.setAttribute("aria-current", "page"); }
      main.textContent = "";
      return view === "sweeps" ? sweepsPage(main) : sweepPage(main, arg);
    }).catch(function (e) {
      if (!main) { return; }
      main.textContent = "";
      main.appendChild(el("p", { role: "alert", "class": "error" }, e.message));
    });
  }

  if (view && view !== "login") { boot(); }
})();
