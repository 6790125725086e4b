/* The interactive backtest report: price with the trades, equity, drawdown, the stats table and
 * the trade list, drawn with the vendored Lightweight Charts. One component for the report file
 * (`tickbridge backtest --plot out.html`, where it is inlined) and the dashboard (served from
 * /dashboard/static/report.js). It builds the DOM with textContent only: no data is ever parsed
 * as HTML. The model is backtest/report_html.py's report_model(). */
(function (global) {
  "use strict";
  var LWC = global.LightweightCharts;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function points(times, values) {
    var out = [];
    for (var i = 0; i < times.length; i++) {
      if (values[i] !== null && values[i] !== undefined) { out.push({ time: times[i], value: values[i] }); }
    }
    return out;
  }

  function chart(container, height) {
    return LWC.createChart(container, {
      height: height, autoSize: false, width: container.clientWidth || 900,
      layout: { attributionLogo: false, background: { color: "#ffffff" }, textColor: "#222" },
      // minBarSpacing: a whole run fits the width (the default 0.5 px a point would show the last
      // 2,000 points of a 4,000-point series at first); zooming in spreads them out again
      timeScale: { timeVisible: true, secondsVisible: false, minBarSpacing: 0.01 },
      crosshair: { mode: 0 },
      handleScroll: true, handleScale: true
    });
  }

  function legend(container, label) {
    var box = el("div", { "class": "tb-legend", "aria-live": "off" }, label);
    container.appendChild(box);
    return box;
  }

  var LABELLED_TRADES = 40;  // more trades than this: markers without text (the trade list says it)

  function markers(trades) {
    var out = [], label = trades.length <= LABELLED_TRADES;
    trades.forEach(function (t, i) {
      var long = t.side === "long";
      out.push({ time: t.entry_time, position: long ? "belowBar" : "aboveBar", color: long ? "#2e7d32" : "#c62828",
                 shape: long ? "arrowUp" : "arrowDown", text: label ? "#" + (i + 1) + " " + t.side : "" });
      out.push({ time: t.exit_time, position: long ? "aboveBar" : "belowBar", color: "#616161", shape: "circle",
                 size: label ? 1 : 0.5, text: label ? "exit #" + (i + 1) : "" });
    });
    return out.sort(function (a, b) { return a.time - b.time; });
  }

  function statsTable(stats) {
    var table = el("table", { "class": "tb-stats" });
    table.appendChild(el("caption", {}, "statistics"));
    var body = el("tbody");
    stats.forEach(function (row) {
      var tr = el("tr");
      tr.appendChild(el("th", { scope: "row" }, row[0]));
      tr.appendChild(el("td", {}, row[1]));
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }

  function fmtNum(v, digits) {
    return v === null || v === undefined ? "" : Number(v).toLocaleString("en-US", { maximumFractionDigits: digits });
  }

  function fmtTime(secs) { return new Date(secs * 1000).toISOString().replace("T", " ").replace(".000Z", "Z"); }

  function tradeTable(trades, onPick) {
    var cols = ["#", "side", "entry time", "entry price", "exit time", "exit price", "size", "fees", "pnl", "return %"];
    var table = el("table", { "class": "tb-trades" });
    table.appendChild(el("caption", {}, trades.length + " trades (select a row to show it on the charts)"));
    var head = el("tr");
    cols.forEach(function (c) { head.appendChild(el("th", { scope: "col" }, c)); });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    trades.forEach(function (t, i) {
      var tr = el("tr", { tabindex: "0", "data-trade": String(i + 1) });
      [i + 1, t.side, fmtTime(t.entry_time), fmtNum(t.entry_price, 8), fmtTime(t.exit_time), fmtNum(t.exit_price, 8),
       fmtNum(t.size, 8), fmtNum(t.fees, 4), fmtNum(t.pnl, 2), fmtNum(t.return_pct, 2)].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      tr.className = Number(t.pnl) >= 0 ? "win" : "loss";
      tr.addEventListener("click", function () { onPick(t); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") { onPick(t); } });
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }

  /* Draw `model` into `root`. Returns the charts so a caller (the dashboard) can add to them. */
  function render(root, model) {
    root.textContent = "";
    root.appendChild(el("h1", {}, model.title));
    if (model.note) { root.appendChild(el("p", { "class": "tb-note" }, model.note)); }
    var grid = el("div", { "class": "tb-report" });
    var charts = el("div", { "class": "tb-charts" });
    grid.appendChild(charts);
    grid.appendChild(statsTable(model.stats || []));
    root.appendChild(grid);
    var s = model.series, made = [], panes = [];
    [["price", "price with trades", 300], ["equity", "equity", 200], ["drawdown", "drawdown %", 140]]
      .forEach(function (spec) {
        if (!s[spec[0]]) { return; }
        var pane = el("section", { "class": "tb-pane", "aria-label": spec[1] });
        pane.appendChild(el("h2", {}, spec[1]));
        charts.appendChild(pane);
        var box = el("div", { "class": "tb-chart" });
        pane.appendChild(box);
        var c = chart(box, spec[2]);
        var series = spec[0] === "drawdown"
          ? c.addAreaSeries({ lineColor: "#c62828", topColor: "rgba(198,40,40,0.05)", bottomColor: "rgba(198,40,40,0.4)",
                              invertFilledArea: true, lineWidth: 1 })
          : c.addLineSeries({ color: spec[0] === "price" ? "#212121" : "#1565c0", lineWidth: 1 });
        series.setData(points(s.time, s[spec[0]]));
        var info = legend(pane, spec[1]);
        c.subscribeCrosshairMove(function (param) {
          var v = param.seriesData && param.seriesData.get(series);
          info.textContent = v ? spec[1] + " " + fmtTime(param.time) + ": " + v.value : spec[1];
        });
        if (spec[0] === "price") { series.setMarkers(markers(model.trades || [])); }
        made.push(c);
        panes.push({ name: spec[0], chart: c, series: series });
      });
    // one time axis: zooming or scrolling any chart moves the others
    var syncing = false;
    made.forEach(function (c) {
      c.timeScale().subscribeVisibleTimeRangeChange(function (range) {
        if (syncing || !range) { return; }
        syncing = true;
        made.forEach(function (o) { if (o !== c) { o.timeScale().setVisibleRange(range); } });
        syncing = false;
      });
    });
    if (made.length) { made[0].timeScale().fitContent(); }
    global.addEventListener("resize", function () {
      made.forEach(function (c, i) { c.applyOptions({ width: charts.querySelectorAll(".tb-chart")[i].clientWidth }); });
    });
    function pick(t) {
      var pad = Math.max(60, (t.exit_time - t.entry_time) * 2);
      made[0] && made[0].timeScale().setVisibleRange({ from: t.entry_time - pad, to: t.exit_time + pad });
    }
    root.appendChild(tradeTable(model.trades || [], pick));
    root.appendChild(el("p", { "class": "tb-attribution" },
      "Charting by TradingView Lightweight Charts\u2122 (Apache-2.0), www.tradingview.com"));
    return panes;
  }

  global.TickbridgeReport = { render: render, markers: markers, el: el, fmtTime: fmtTime, fmtNum: fmtNum, chart: chart };
})(window);
