/* tickbridge dashboard: fills the server's HTML shells from the API (api/dashboard/__init__.py).
 *
 * The access token is kept in this page's memory only; a new page asks /dashboard/session/refresh
 * for one (the refresh token is an HttpOnly cookie this script cannot read). Refreshes are
 * serialised across the origin's tabs (Web Locks): two tabs rotating the same refresh token at
 * once would look like a stolen token and revoke the session. Data only ever reaches the DOM
 * through textContent. */
(function () {
  "use strict";
  var API = "/api/v1";
  var SESSION = "/dashboard/session";
  var PAGE = 50;
  var FEED_ROWS = 500;
  var me = { token: null, role: null, username: null };
  var refreshTimer = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function say(text) { var s = document.getElementById("status"); if (s) { s.textContent = text; } }

  function session(path, body) {
    return fetch(SESSION + path, { method: "POST", credentials: "same-origin",
      headers: { "X-Tickbridge-Dashboard": "1", "Content-Type": "application/json" },
      body: JSON.stringify(body || {}) });
  }

  function locked(fn) {
    return navigator.locks && navigator.locks.request ? navigator.locks.request("tickbridge-refresh", fn) : fn();
  }

  function adopt(answer) {
    me.token = answer.access_token; me.role = answer.role; me.username = answer.username;
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () { refresh().catch(toLogin); }, Math.max(10, answer.expires_in - 60) * 1000);
    return answer;
  }

  function refresh() {
    return locked(function () {
      return session("/refresh").then(function (r) {
        if (!r.ok) { throw new Error("not signed in"); }
        return r.json();
      });
    }).then(adopt);
  }

  function toLogin() { location.assign("/login"); }

  /* GET or POST the API with the access token; one refresh on a 401. Rejects with the API's message. */
  function api(path, options) {
    options = options || {};
    function go() {
      var headers = { Authorization: "Bearer " + me.token };
      if (options.body !== undefined) { headers["Content-Type"] = "application/json"; }
      return fetch(API + path, { method: options.method || "GET", headers: headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body) });
    }
    return go().then(function (r) { return r.status === 401 ? refresh().then(go, function () { toLogin(); return r; }) : r; })
      .then(function (r) {
        return r.text().then(function (text) {
          var data = text ? JSON.parse(text) : null;
          if (!r.ok) {
            var error = new Error((data && data.error && data.error.message) || r.statusText);
            error.status = r.status;
            throw error;
          }
          return data;
        });
      });
  }

  function table(caption, columns, rows, cells) {
    var t = el("table", { "class": "tb-table" });
    t.appendChild(el("caption", {}, caption));
    var head = el("tr");
    columns.forEach(function (c) { head.appendChild(el("th", { scope: "col" }, c)); });
    var thead = el("thead"); thead.appendChild(head); t.appendChild(thead);
    var body = el("tbody");
    rows.forEach(function (row) {
      var tr = el("tr");
      cells(row).forEach(function (v) { tr.appendChild(v instanceof Node ? wrap(v) : el("td", {}, v)); });
      body.appendChild(tr);
    });
    t.appendChild(body);
    return t;
  }

  function wrap(node) { var td = el("td"); td.appendChild(node); return td; }

  function secs(ns) { return Math.floor(Number(ns) / 1e9); }

  /* --- pages --- */

  function home(main) {
    if (me.role === "subscriber") { location.replace("/feed"); return Promise.resolve(); }
    return api("/bots").then(function (bots) {
      main.textContent = "";
      main.appendChild(el("h1", {}, "bots"));
      var admin = me.role === "admin";
      return Promise.all(bots.map(function (b) {
        var key = admin ? b.runtime_id : b.id;
        var id = encodeURIComponent(key);
        return Promise.all([api("/bots/" + id + "/status").catch(function (e) { return { state: "?", error: e.message }; }),
                            api("/bots/" + id + "/pnl").catch(function () { return {}; })])
          .then(function (r) { return { bot: b, key: key, status: r[0], pnl: r[1] }; });
      })).then(function (rows) {
        main.appendChild(table(rows.length + " bots", ["bot", "strategy", "symbol", "venue", "state", "why it stopped",
                                                      "halted", "realized P&L", "fees", "published"], rows,
          function (r) {
            var link = el("a", { href: "/bots/" + encodeURIComponent(r.key) }, r.bot.id);
            var c = r.bot.config || {};
            return [link, c.strategy, c.symbol, c.venue, r.status.state,
                    r.status.stop_reason ? r.status.stop_reason + (r.status.stop_message ? ": " + r.status.stop_message : "") : "",
                    r.status.halted ? "yes" : "no", r.pnl.realized, r.pnl.fees, r.bot.published ? "yes" : "no"];
          }));
      });
    });
  }

  function controls(key, onDone) {
    var box = el("div", { "class": "controls", role: "group", "aria-label": "bot controls" });
    [["start", "Start"], ["stop", "Stop (cancels or keeps open orders per the bot's on_stop)"],
     ["kill", "Kill: cancel all orders, flatten the position and halt"], ["resume", "Resume: lift the kill's halt"]]
      .forEach(function (action) {
        var b = el("button", { type: "button", id: "bot-" + action[0], "data-action": action[0] }, action[0]);
        b.addEventListener("click", function () {
          if (!window.confirm(action[1] + "?\n\nbot: " + key)) { return; }
          var body = action[0] === "kill" ? { reason: "dashboard" } : undefined;
          api("/bots/" + encodeURIComponent(key) + "/" + action[0], { method: "POST", body: body })
            .then(function () { say(action[0] + ": done"); onDone(); }, function (e) { say(action[0] + ": " + e.message); });
        });
        box.appendChild(b);
      });
    return box;
  }

  function pager(caption, columns, load, cells) {
    /* A table read a page at a time: load(cursor) -> {rows, next}; cursor null is the first page. */
    var box = el("section", { "class": "pager", "aria-label": caption });
    var cursors = [null];
    function show(i) {
      load(cursors[i]).then(function (page) {
        box.textContent = "";
        box.appendChild(table(caption + " (page " + (i + 1) + ")", columns, page.rows, cells));
        var prev = el("button", { type: "button" }, "previous page");
        var next = el("button", { type: "button" }, "next page");
        prev.disabled = i === 0; next.disabled = page.next === null;
        prev.addEventListener("click", function () { show(i - 1); });
        next.addEventListener("click", function () { cursors[i + 1] = page.next; show(i + 1); });
        box.appendChild(prev); box.appendChild(next);
      }, function (e) { box.textContent = caption + ": " + e.message; });
    }
    show(0);
    return box;
  }

  function allPages(first, step, maxPages) {
    /* Concatenate pages while they come full (a chart wants the whole series, up to a bound). */
    var out = [];
    function more(cursor, n) {
      return first(cursor).then(function (page) {
        out = out.concat(page.rows);
        return page.next === null || n + 1 >= maxPages ? out : more(page.next, n + 1);
      });
    }
    return more(null, 0);
  }

  function botPage(main, key) {
    var id = encodeURIComponent(key);
    main.textContent = "";
    main.appendChild(el("h1", {}, "bot " + key));
    var state = el("p", { id: "bot-state", "aria-live": "polite" }, "");
    main.appendChild(state);
    function status() {
      return api("/bots/" + id + "/status").then(function (s) {
        state.textContent = "state " + s.state + (s.stop_reason ? ", stopped: " + s.stop_reason : "") +
          (s.stop_message ? " (" + s.stop_message + ")" : "") + (s.halted ? ", halted" : "") +
          (s.last_tick_ts ? ", last tick " + s.last_tick_ts : "");
        state.setAttribute("data-state", s.state);
      });
    }
    main.appendChild(controls(key, status));
    var charts = el("div", { "class": "tb-charts" });
    main.appendChild(charts);
    var tables = el("div", { "class": "tables" });
    main.appendChild(tables);
    return status().then(function () {
      return api("/bots/" + id);
    }).then(function (bot) {
      var fillsOf = function (cursor) {
        return api("/bots/" + id + "/fills?limit=1000&after_id=" + (cursor || 0)).then(function (rows) {
          return { rows: rows, next: rows.length === 1000 ? rows[rows.length - 1].id : null };
        });
      };
      var signalsOf = function (cursor) {
        return api("/signals?limit=1000&bot_id=" + encodeURIComponent(bot.runtime_id) + "&cursor=" + (cursor || 0))
          .then(function (page) { return { rows: page.items, next: page.next_cursor }; });
      };
      var equityOf = function (cursor) {
        return api("/bots/" + id + "/equity?every=bar&limit=1000&after=" + (cursor === null ? -1 : cursor))
          .then(function (rows) { return { rows: rows, next: rows.length === 1000 ? rows[rows.length - 1].ts_ns : null }; });
      };
      return Promise.all([allPages(fillsOf, 1000, 20), allPages(signalsOf, 1000, 20), allPages(equityOf, 1000, 50)])
        .then(function (r) { drawBot(charts, bot, r[0], r[1], r[2]); })
        .then(function () {
          tables.appendChild(pager("positions", ["symbol", "qty", "avg price", "realized", "fees"],
            function () { return api("/bots/" + id + "/positions").then(function (rows) { return { rows: rows, next: null }; }); },
            function (p) { return [p.symbol, p.qty, p.avg_price, p.realized_pnl, p.fees]; }));
          tables.appendChild(pager("orders, newest first", ["time", "side", "type", "qty", "limit", "state", "filled", "avg price", "reason"],
            function (offset) {
              offset = offset || 0;
              return api("/bots/" + id + "/orders?limit=" + PAGE + "&offset=" + offset)
                .then(function (rows) { return { rows: rows, next: rows.length === PAGE ? offset + PAGE : null }; });
            },
            function (o) { return [o.ts_init, o.side, o.type, o.qty, o.limit_price, o.state, o.filled_qty, o.avg_fill_price, o.reason]; }));
          tables.appendChild(pager("fills", ["time", "side", "qty", "price", "fee", "liquidity"],
            function (after) {
              return api("/bots/" + id + "/fills?limit=" + PAGE + "&after_id=" + (after || 0))
                .then(function (rows) { return { rows: rows, next: rows.length === PAGE ? rows[rows.length - 1].id : null }; });
            },
            function (f) { return [f.ts, f.side, f.qty, f.price, f.fee, f.liquidity]; }));
          setInterval(function () { status().catch(function () {}); }, 5000);
        });
    });
  }

  function drawBot(charts, bot, fills, signals, equity) {
    /* Price: the bot's fills (markers by side) and its signals (markers with confidence and model
     * version), on the prices the fills and signals carry. Equity and drawdown from the bar points. */
    var R = window.TickbridgeReport;
    var byTime = {};
    fills.forEach(function (f) { byTime[secs(f.ts_ns)] = Number(f.price); });
    signals.forEach(function (s) {
      var price = s.payload && (s.payload.price || s.payload.close);
      if (price !== undefined && byTime[secs(s.ts)] === undefined) { byTime[secs(s.ts)] = Number(price); }
    });
    var times = Object.keys(byTime).map(Number).sort(function (a, b) { return a - b; });
    var eq = equity.map(function (p) { return { time: secs(p.ts_ns), value: Number(p.equity) }; });
    var dedup = [];
    eq.forEach(function (p) { if (dedup.length && dedup[dedup.length - 1].time === p.time) { dedup[dedup.length - 1] = p; } else { dedup.push(p); } });
    var peak = -Infinity;
    var dd = dedup.map(function (p) { peak = Math.max(peak, p.value); return { time: p.time, value: peak > 0 ? (p.value / peak - 1) * 100 : 0 }; });
    var title = (bot.config.symbol || "") + ": fills and signals";
    [[title, times.map(function (t) { return { time: t, value: byTime[t] }; }), "price"],
     ["equity", dedup, "equity"], ["drawdown %", dd, "drawdown"]].forEach(function (spec) {
      var pane = el("section", { "class": "tb-pane", "aria-label": spec[0] });
      pane.appendChild(el("h2", {}, spec[0]));
      var box = el("div", { "class": "tb-chart", id: "chart-" + spec[2] });
      pane.appendChild(box);
      charts.appendChild(pane);
      var chart = R.chart(box, spec[2] === "price" ? 300 : 180);
      var series = chart.addLineSeries({ color: spec[2] === "drawdown" ? "#c62828" : "#1565c0", lineWidth: 1 });
      series.setData(spec[1]);
      if (spec[2] === "price") {
        var marks = fills.map(function (f) {
          var buy = f.side.toLowerCase() === "buy";
          return { time: secs(f.ts_ns), position: buy ? "belowBar" : "aboveBar", color: buy ? "#2e7d32" : "#c62828",
                   shape: buy ? "arrowUp" : "arrowDown", text: f.side + " " + f.qty };
        }).concat(signals.map(function (s) {
          return { time: secs(s.ts), position: "inBar", color: "#6a1b9a", shape: "circle",
                   text: "signal " + s.direction + " c=" + s.confidence + " " + (s.model_id || "") + "@" + (s.model_version || "") };
        })).filter(function (m) { return byTime[m.time] !== undefined; });
        series.setMarkers(marks.sort(function (a, b) { return a.time - b.time; }));
      }
      chart.timeScale().fitContent();
    });
    charts.setAttribute("data-fills", String(fills.length));
    charts.setAttribute("data-signals", String(signals.length));
  }

  function feedPage(main) {
    main.textContent = "";
    main.appendChild(el("h1", {}, "signals"));
    var subs = el("div");
    main.appendChild(subs);
    var live = el("table", { "class": "tb-table", id: "feed" });
    live.appendChild(el("caption", {}, "live signals, newest first (up to " + FEED_ROWS + ")"));
    var head = el("tr");
    ["id", "time", "bot", "symbol", "direction", "confidence", "model", "version"].forEach(function (c) {
      head.appendChild(el("th", { scope: "col" }, c));
    });
    var thead = el("thead"); thead.appendChild(head); live.appendChild(thead);
    var body = el("tbody"); live.appendChild(body);
    main.appendChild(live);
    var last = 0, pending = [], scheduled = false;
    function flush() {
      /* many signals a second arrive as one DOM update per frame, the table bounded */
      scheduled = false;
      var frag = document.createDocumentFragment();
      pending.splice(0).reverse().forEach(function (s) {
        var tr = el("tr", { "data-bot": s.bot_id });
        [s.id, new Date(Number(s.ts) / 1e6).toISOString(), s.bot_id, s.symbol, s.direction, s.confidence,
         s.model_id, s.model_version].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
        frag.appendChild(tr);
      });
      body.insertBefore(frag, body.firstChild);
      while (body.rows.length > FEED_ROWS) { body.deleteRow(-1); }
    }
    function add(s) {
      if (s.id <= last) { return; }
      last = s.id;
      pending.push(s);
      if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
    }
    function connect() {
      var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + API +
                             "/signals/ws?after_id=" + last);
      ws.onopen = function () { ws.send(JSON.stringify({ type: "auth", token: me.token })); };
      ws.onmessage = function (m) {
        var frame = JSON.parse(m.data);
        if (frame.type === "auth") { say("live"); }
        if (frame.type === "signal") { add(frame.signal); }
      };
      ws.onclose = function () {
        say("reconnecting...");
        setTimeout(function () { refresh().then(connect, toLogin); }, 2000);
      };
    }
    return api("/subscriptions").then(function (rows) {
      if (me.role === "subscriber" || rows.length) {
        subs.appendChild(table("your subscriptions", ["bot", "plan", "delay (s)", "since", "active"], rows,
          function (s) { return [s.bot_id, s.plan, s.delay_s, s.created_at, s.active ? "yes" : "no"]; }));
      }
      return api("/signals?limit=1000");
    }).then(function (page) {
      page.items.slice(-100).forEach(add);
      if (page.items.length) { last = page.items[page.items.length - 1].id; }
      connect();
    });
  }

  function fromResult(job, result) {
    /* A job's stored result (backtest.report.to_json_dict) as the report's model. */
    var times = [], equity = [], drawdown = [], peak = -Infinity;
    result.equity.forEach(function (p) {
      var t = Math.floor(Date.parse(p.time) / 1000);
      if (times.length && times[times.length - 1] === t) { times.pop(); equity.pop(); drawdown.pop(); }
      peak = Math.max(peak, p.equity);
      times.push(t); equity.push(p.equity); drawdown.push(peak > 0 ? (p.equity / peak - 1) * 100 : 0);
    });
    var trades = result.trades.map(function (t) {
      return { side: t.side, entry_time: Math.floor(Date.parse(t.entry_time) / 1000), exit_time: Math.floor(Date.parse(t.exit_time) / 1000),
               entry_price: t.entry_price, exit_price: t.exit_price, size: t.size, fees: t.fees, pnl: t.pnl, return_pct: t.return_pct };
    });
    var stats = Object.keys(result.stats || {}).map(function (k) { return [k, String(result.stats[k])]; });
    return { title: "backtest " + job, note: result.note, stats: stats, trades: trades,
             series: { time: times, equity: equity, drawdown: drawdown } };
  }

  function backtestPage(main, job) {
    return api("/backtests/" + encodeURIComponent(job) + "/result").then(function (result) {
      window.TickbridgeReport.render(main, fromResult(job, result));
    });
  }

  function loginPage() {
    var form = document.getElementById("login-form");
    var error = document.getElementById("login-error");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      error.textContent = "";
      session("", { username: form.username.value, password: form.password.value }).then(function (r) {
        if (r.ok) { location.assign("/"); return; }
        return r.json().then(function (d) { error.textContent = (d.error && d.error.message) || "login failed"; });
      }, function () { error.textContent = "the server did not answer"; });
    });
  }

  function boot() {
    var view = document.body.getAttribute("data-view");
    var arg = document.body.getAttribute("data-arg");
    if (view === "login") { loginPage(); return; }
    var main = document.getElementById("main");
    document.getElementById("logout").addEventListener("click", function () {
      session("/logout").then(toLogin, toLogin);
    });
    refresh().then(function () {
      document.getElementById("who").textContent = me.username + " (" + me.role + ")";
      if (me.role === "subscriber") { document.getElementById("nav-bots").hidden = true; }
      var pages = { home: home, bot: botPage, feed: feedPage, backtest: backtestPage };
      return pages[view](main, arg);
    }, toLogin).catch(function (e) {
      main.textContent = "";
      main.appendChild(el("p", { role: "alert", "class": "error" }, e.message));
    });
  }

  boot();
})();
