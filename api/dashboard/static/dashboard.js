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
  // rows per table page: 50, or ?rows=N (1..1000, the API's own bound) for a longer or shorter page
  var PAGE = (function () {
    var n = Number(new URLSearchParams(location.search).get("rows"));
    return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : 50;
  })();
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
            error.field = (data && data.error && data.error.field) || null;  // the input to blame, dotted
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
      main.appendChild(el("p", {}, "")).appendChild(el("a", { href: "/new-bot", id: "new-bot" }, "new bot"));
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

  function pager(caption, columns, load, cells, count) {
    /* A table read a page at a time: load(cursor) -> {rows, next}; cursor null is the first page.
     * box.refresh() re-reads the page on show and swaps only its <table>: the buttons stay the same
     * elements, so a keyboard user's focus and the page they paged to survive a live refresh. The
     * DOM holds one page of rows, whatever the books hold (issue 19: 10,000 fills stay responsive).
     * count (optional): () -> Promise of {n, more} (more: at least n), re-read with each refresh and
     * shown as the table's total, so a page of 50 never reads as "50 fills". */
    var box = el("section", { "class": "pager", "aria-label": caption });
    var cursors = [null], cur = 0, asked = 0, shown = null, nextCursor = null, seq = 0, total = null;
    var prev = el("button", { type: "button", "aria-label": caption + ": previous page" }, "previous page");
    var next = el("button", { type: "button", "aria-label": caption + ": next page" }, "next page");
    var problem = el("p", { "class": "pager-problem", role: "status" }, "");
    var sum = el("p", { "class": "pager-total" }, count ? "counting..." : "");
    prev.addEventListener("click", function () { if (cur > 0) { show(cur - 1); } });
    next.addEventListener("click", function () { if (nextCursor !== null) { cursors[cur + 1] = nextCursor; show(cur + 1); } });
    if (count) { box.appendChild(sum); }  // above its table: the total reads before the rows
    box.appendChild(problem); box.appendChild(prev); box.appendChild(next);
    function title(i) {
      var of = total && !total.more ? " of " + Math.max(1, Math.ceil(total.n / PAGE)) : "";
      return caption + " (page " + (i + 1) + of + ")";
    }
    function show(i) {
      var mine = ++seq;  // a slower earlier answer never overwrites a newer one
      asked = i;  // a live refresh while a click's page is on its way re-reads that page, not the old one
      return load(cursors[i]).then(function (page) {
        if (mine !== seq) { return; }
        cur = i; nextCursor = page.next;
        var t = table(title(i), columns, page.rows, cells);
        t.setAttribute("data-rows", String(page.rows.length));
        if (shown) { box.replaceChild(t, shown); } else { box.insertBefore(t, problem); }
        shown = t;
        problem.textContent = "";
        prev.disabled = i === 0; lastPage();
      }, function (e) { if (mine === seq) { problem.textContent = caption + ": " + e.message; } });
    }
    function lastPage() {
      /* no next page after the last, even a full one (the total says where the rows end) */
      next.disabled = nextCursor === null || (total !== null && !total.more && (cur + 1) * PAGE >= total.n);
    }
    function counted() {
      return count().then(function (c) {
        total = c;
        sum.setAttribute("data-total", String(c.n));
        sum.textContent = (c.more ? "more than " : "") + c.n.toLocaleString("en-US") + " " + caption.split(",")[0] + " in all";
        if (shown) { shown.caption.textContent = title(cur); lastPage(); }
      }, function (e) { sum.textContent = "count: " + e.message; });
    }
    box.refresh = function () { return Promise.all([show(asked), count ? counted() : null]); };
    show(0);
    if (count) { counted(); }
    return box;
  }

  function walk(first, maxPages, keep) {
    /* Read pages while they come full, up to maxPages, keeping only the last `keep` rows (the
     * newest, for markers; Infinity: all, for a curve's envelope) but counting them all:
     * {rows, n, more, last} (more: the bound stopped it, there may be more; last: the cursor after
     * the last row read, when the page says it). */
    var out = [], n = 0;
    function more(cursor, pages) {
      return first(cursor).then(function (page) {
        n += page.rows.length;
        out = keep > 0 ? out.concat(page.rows.slice(-keep)).slice(-keep) : out;
        var next = page.next;
        if (next === null || pages + 1 >= maxPages) {
          return { rows: out, n: n, more: next !== null, last: page.last === undefined ? cursor : page.last };
        }
        return more(next, pages + 1);
      });
    }
    return more(null, 0);
  }

  function offsetCount(path) {
    /* How many rows an offset-paged list holds (GET .../orders, newest first), with no count from
     * the API: is there a row at offset k? Gallop from what it held last time, then halve: about
     * 20 one-row reads the first time for 10,000 rows, 2 when nothing changed. The live refresh
     * never runs two at once (botPage's busy flag). */
    var known = 0;
    function at(k) {
      return api(path + (path.indexOf("?") < 0 ? "?" : "&") + "limit=1&offset=" + k)
        .then(function (rows) { return rows.length > 0; });
    }
    function search(lo, hi) {  // a row at lo - 1 (or lo = 0), none at hi - 1 (hi > lo)
      if (hi - lo <= 1) { return Promise.resolve(lo); }
      var mid = Math.floor((lo + hi) / 2);
      return at(mid - 1).then(function (yes) { return yes ? search(mid, hi) : search(lo, mid); });
    }
    function gallop(lo, step) {  // a row at lo - 1 (or lo = 0)
      var probe = Math.min(lo + step, OFFSET_MAX + 1);
      return at(probe - 1).then(function (yes) {
        if (!yes) { return search(lo, probe); }
        return probe > OFFSET_MAX ? probe : gallop(probe, step * 2);
      });
    }
    return function () {
      var start = known > 0 ? at(known - 1).then(function (still) { return still ? known : 0; }) : Promise.resolve(0);
      return start.then(function (lo) { return gallop(lo, lo > 0 ? 1 : PAGE); })
        .then(function (n) { known = n; return { n: n, more: n > OFFSET_MAX }; });
    };
  }

  function idCount(path, seed) {
    /* How many rows an id-paged list holds (GET .../fills?after_id=): the rows after the last id
     * counted, added to what was counted before (seed: a walk's {n, more, last}). A page of no
     * rows when nothing is new. */
    var state = null;
    seed.then(function (s) { state = { n: s.n, more: s.more, last: s.last || 0 }; }, function () {});  // its failure shows on the count
    function more(count) {
      return api(path + "?limit=1000&after_id=" + state.last).then(function (rows) {
        if (rows.length) { state.last = rows[rows.length - 1].id; }
        state.n += rows.length;
        if (rows.length < 1000) { state.more = false; }  // read to the end from the walk's last row: exact
        return rows.length === 1000 && count < 20 ? more(count + 1) : { n: state.n, more: state.more };
      });
    }
    return function () {
      return state === null ? seed.then(function (s) { return { n: s.n, more: s.more }; }) : more(0);
    };
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
        showRisk(riskBox, s.risk);
      });
    }
    main.appendChild(controls(key, status));
    main.appendChild(el("p", {})).appendChild(el("a", { href: "/bots/" + id + "/edit", id: "bot-edit" }, "edit config"));
    var riskBox = el("section", { "class": "risk", id: "bot-risk-state", "aria-labelledby": "risk-state-title" });
    main.appendChild(riskBox);
    var charts = el("div", { "class": "tb-charts" });
    main.appendChild(charts);
    var tables = el("div", { "class": "tables" });
    main.appendChild(tables);
    return status().then(function () {
      return api("/bots/" + id);
    }).then(function (bot) {
      var fillsOf = function (cursor) {
        return api("/bots/" + id + "/fills?limit=1000&after_id=" + (cursor || 0)).then(function (rows) {
          var last = rows.length ? rows[rows.length - 1].id : (cursor || 0);
          return { rows: rows, next: rows.length === 1000 ? last : null, last: last };
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
      // The charts read their series in the background (the fills' walk also counts them: the API
      // has no count); the tables come at once, a page each, and never wait for the charts.
      var fillWalk = walk(fillsOf, FILL_PAGES, MAX_FILLS);
      var drawn = Promise.all([fillWalk, walk(signalsOf, 20, MAX_MARKERS), walk(equityOf, 50, Infinity)])
        .then(function (r) { return drawBot(charts, key, bot, r[0].rows, r[1].rows, r[2].rows); });
      var pagers = [];
      function keep(box) { pagers.push(box); tables.appendChild(box); }
      tables.appendChild(riskLimits(bot));
      keep(pager("risk denials, newest first", ["time", "side", "type", "qty", "limit", "reason code"],
        function (offset) {
          offset = offset || 0;
          return api("/bots/" + id + "/orders?state=DENIED&limit=" + PAGE + "&offset=" + offset)
            .then(function (rows) { return { rows: rows, next: rows.length === PAGE ? offset + PAGE : null }; });
        },
        function (o) { return [o.ts_init, o.side, o.type, o.qty, o.limit_price, o.reason]; },
        offsetCount("/bots/" + id + "/orders?state=DENIED")));
      keep(pager("positions", ["symbol", "qty", "avg price", "realized", "fees"],
        function () { return api("/bots/" + id + "/positions").then(function (rows) { return { rows: rows, next: null }; }); },
        function (p) { return [p.symbol, p.qty, p.avg_price, p.realized_pnl, p.fees]; }));
      keep(pager("orders, newest first", ["time", "side", "type", "qty", "limit", "state", "filled", "avg price", "reason"],
        function (offset) {
          offset = offset || 0;
          return api("/bots/" + id + "/orders?limit=" + PAGE + "&offset=" + offset)
            .then(function (rows) { return { rows: rows, next: rows.length === PAGE ? offset + PAGE : null }; });
        },
        function (o) { return [o.ts_init, o.side, o.type, o.qty, o.limit_price, o.state, o.filled_qty, o.avg_fill_price, o.reason]; },
        offsetCount("/bots/" + id + "/orders")));
      keep(pager("fills", ["time", "side", "qty", "price", "fee", "liquidity"],
        function (after) {
          return api("/bots/" + id + "/fills?limit=" + PAGE + "&after_id=" + (after || 0))
            .then(function (rows) { return { rows: rows, next: rows.length === PAGE ? rows[rows.length - 1].id : null }; });
        },
        function (f) { return [f.ts, f.side, f.qty, f.price, f.fee, f.liquidity]; },
        idCount("/bots/" + id + "/fills", fillWalk)));
      var busy = false;
      function live() {
        /* While the bot runs the books move: new equity points (?after=) join the charts and each
         * table re-reads the page on show, in place. Nothing is read while the tab is hidden. */
        if (busy || document.hidden) { return; }
        busy = true;
        var after = charts.getAttribute("data-equity-after");
        Promise.all([status().catch(function () {}),
                     after === null ? null : api("/bots/" + id + "/equity?every=bar&limit=1000&after=" + after)
                       .then(function (rows) { charts.moreEquity(rows); }, function () {})]
                    .concat(pagers.map(function (b) { return b.refresh(); })))
          .then(function () { tables.setAttribute("data-refreshed", String(Number(tables.getAttribute("data-refreshed") || 0) + 1)); })
          .then(function () { busy = false; }, function () { busy = false; });
      }
      setInterval(live, LIVE_MS);
      document.addEventListener("visibilitychange", function () { if (!document.hidden) { live(); } });
      return drawn;
    });
  }

  var LIMIT_NAMES = { daily_loss: "daily loss", drawdown_pct: "drawdown %", gross_exposure: "gross exposure",
                      position_qty: "position", open_orders: "open orders" };

  function showRisk(box, risk) {
    /* The runner's risk state (GET /status: risk): the gate's state and why, each limit's use
     * against it, the denials of this run and the last one's reason. Rebuilt in place on each status
     * read (a few elements); values are the API's text. */
    box.textContent = "";
    box.appendChild(el("h2", { id: "risk-state-title" }, "risk state"));
    if (!risk) { box.setAttribute("data-state", ""); box.appendChild(el("p", {}, "not measured: the bot has not run since the runtime started")); return; }
    box.setAttribute("data-state", risk.state);
    box.appendChild(el("p", { id: "risk-gate-state" }, "gate " + risk.state + (risk.reason ? " (" + risk.reason + ")" : "") +
      (risk.since ? " since " + risk.since : "") + (risk.account_state ? "; account " + risk.account_state +
      (risk.account_reason ? " (" + risk.account_reason + ")" : "") : "")));
    if (risk.limits.length) {
      var t = table("limits: use now against the limit", ["measure", "used", "limit"], risk.limits, function (l) {
        return [LIMIT_NAMES[l.name] || l.name, l.used === null ? "n/a" : l.used, l.limit === null ? "no limit" : l.limit];
      });
      t.id = "risk-use";
      Array.prototype.forEach.call(t.tBodies[0].rows, function (tr, i) { tr.setAttribute("data-limit", risk.limits[i].name); });
      box.appendChild(t);
    }
    var d = risk.last_denial;
    box.appendChild(el("p", { id: "risk-denials", "data-denials": String(risk.denials) },
      risk.denials + " orders denied in this run" + (d ? "; the last at " + d.ts + ": " + d.reason : "")));
  }

  function riskLimits(bot) {
    /* The bot's risk limits as its config states them (risk.default_bot; risk.account applies to the
     * whole account). The kill switch's halt shows in #bot-state; each order the gate refused shows
     * with its reason code in the denials table. Values are the config's own text. */
    var box = el("section", { "class": "risk", "aria-labelledby": "risk-title", id: "bot-risk" });
    box.appendChild(el("h2", { id: "risk-title" }, "risk limits"));
    var risk = (bot.config && bot.config.risk) || {};
    [["this bot", risk.default_bot], ["the account", risk.account]].forEach(function (scope) {
      var limits = scope[1] || {};
      var keys = Object.keys(limits);
      if (!keys.length) { box.appendChild(el("p", {}, scope[0] + ": no limits set in this config")); return; }
      var dl = el("dl", { "aria-label": "risk limits of " + scope[0], "data-scope": scope[0] === "this bot" ? "bot" : "account" });
      keys.forEach(function (k) {
        var v = limits[k];
        dl.appendChild(el("dt", {}, k.replace(/_/g, " ")));
        dl.appendChild(el("dd", { "data-limit": k }, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)));
      });
      box.appendChild(el("h3", {}, scope[0]));
      box.appendChild(dl);
    });
    return box;
  }

  /* The candle chart of a bot's symbol (GET /bots/{id}/bars: the bars the bot trades on, the last
   * one maybe still forming) with its orders, fills and signals as markers on the candle they fell
   * in. It follows the bot by polling for the last candle and what came after it (?since=), the
   * new fills (?after_id=), signals (cursor) and the newest orders, and updates the series in
   * place: nothing else on the page is redrawn. */
  var MAX_MARKERS = 1500;  // markers given to the chart at most (one per candle and kind: see marks)
  var MAX_FILLS = 20000;   // the newest fills kept for markers (a few numbers each)
  var FILL_PAGES = 50;     // the fills' first walk reads at most 50 pages of 1,000 (it also counts them)
  var MAX_DRAWN = 2000;    // points per equity/drawdown series given to the chart at most (their envelope)
  var OFFSET_MAX = 1000000;  // the API's largest ?offset=
  var LIVE_MS = 5000;  // equity, drawdown and the tables: a modest pace (the candles poll at POLL_MS)
  var POLL_MS = 2000;
  var CANDLES = 1000;

  function signalText(s) {
    /* direction, confidence and the model (name and version) that made it, when a model did */
    var way = { "1": "long", "-1": "short", "0": "flat" }[String(s.direction)] || String(s.direction);
    var model = s.model_id && String(s.model_id) !== "0" ? " " + s.model_id + " v" + s.model_version : "";
    return way + " " + s.confidence + model;
  }

  function candleChart(pane, key, bot, fills, signals) {
    var R = window.TickbridgeReport;
    var id = encodeURIComponent(key);
    var symbol = (bot.config && bot.config.symbol) || "";
    var ownBar = (bot.config && bot.config.bar) || "1min";
    var head = el("div", { "class": "chart-head" });
    head.appendChild(el("h2", { id: "candles-title" }, symbol + " candles: fills (arrows), working orders (squares), " +
                                                       "signals (circles, with confidence and model)"));
    var label = el("label", { "for": "timeframe" }, "timeframe");
    var pick = el("select", { id: "timeframe", name: "timeframe" });
    [ownBar, "5min", "15min", "1h", "4h", "1D"].filter(function (v, i, a) { return a.indexOf(v) === i; })
      .forEach(function (v) { pick.appendChild(el("option", { value: v }, v === ownBar ? v + " (the bot's bar)" : v)); });
    head.appendChild(label); head.appendChild(pick);
    pane.appendChild(head);
    var note = el("p", { id: "candles-note", "class": "tb-note", role: "status" }, "");
    pane.appendChild(note);
    var box = el("div", { "class": "tb-chart", id: "chart-price", role: "img", "aria-labelledby": "candles-title candles-summary" });
    pane.appendChild(box);
    var summary = el("p", { id: "candles-summary", "class": "visually-hidden" }, "");
    pane.appendChild(summary);
    var legend = el("div", { "class": "tb-legend", "aria-hidden": "true" }, "");
    pane.appendChild(legend);
    var chart = R.chart(box, 320);
    var series = chart.addCandlestickSeries({ upColor: "#2e7d32", downColor: "#c62828", borderVisible: false,
                                             wickUpColor: "#2e7d32", wickDownColor: "#c62828" });
    var state = { timeframe: ownBar, times: [], lastNs: null, fillAfter: 0, signalCursor: 0, orders: {},
                  fills: [], signals: [], timer: null, busy: false };
    var orderList = [];

    function candle(b) {
      return { time: secs(b.time_ns), open: Number(b.open), high: Number(b.high), low: Number(b.low), close: Number(b.close) };
    }
    function snap(t) {
      /* the start of the candle holding time t (seconds), or null before the first one */
      var a = state.times, lo = 0, hi = a.length - 1, found = null;
      while (lo <= hi) { var mid = (lo + hi) >> 1; if (a[mid] <= t) { found = a[mid]; lo = mid + 1; } else { hi = mid - 1; } }
      return found;
    }
    function marks() {
      /* Every fill, working order and signal kept goes on the candle it fell in, but the chart gets
       * one marker per candle and kind (buys, sells, orders, signals) saying how many it stands
       * for ("238 buys"), at most MAX_MARKERS of them, the newest: 10,000 fills on 20 candles draw
       * as 40 arrows, not 10,000 stacked ones (issue 19: a page with 10,000 fills stays responsive). */
      var groups = {}, order = [], marked = { fills: 0, orders: 0, signals: 0 };
      function add(t, kind, what, base, text) {
        var at = snap(t);
        if (at === null) { return; }
        marked[what] += 1;
        var k = at + " " + kind, g = groups[k];
        if (!g) { g = groups[k] = { time: at, n: 0, base: base, text: text, kind: kind }; order.push(g); }
        g.n += 1;
      }
      state.fills.forEach(function (f) {
        var buy = f.side === "buy";
        add(f.t, f.side, "fills", { position: buy ? "belowBar" : "aboveBar", color: buy ? "#2e7d32" : "#c62828",
                                    shape: buy ? "arrowUp" : "arrowDown", size: 1 }, f.side + " " + f.qty);
      });
      orderList.forEach(function (o) {
        if (String(o.type).toUpperCase() === "MARKET" && String(o.state).toUpperCase() === "FILLED") { return; }  // its fills say it
        add(secs(o.ts_init_ns), "order", "orders", { position: "aboveBar", color: "#ef6c00", shape: "square", size: 1 },
            String(o.type).toLowerCase() + " " + String(o.side).toLowerCase() + (o.qty === null || o.qty === undefined ? "" : " " + o.qty) +
            (o.limit_price ? " @ " + o.limit_price : o.stop_price ? " stop " + o.stop_price : "") + " " + String(o.state).toLowerCase());
      });
      state.signals.forEach(function (s) {
        add(secs(s.ts), "signal", "signals", { position: "inBar", color: "#6a1b9a", shape: "circle", size: 0.6 }, signalText(s));
      });
      var many = { buy: " buys", sell: " sells", order: " orders", signal: " signals" };
      var placed = order.map(function (g) {
        var text = g.n === 1 ? g.text : g.n + many[g.kind];  // short: a candle may carry four
        return { time: g.time, position: g.base.position, color: g.base.color, shape: g.base.shape, size: g.base.size, text: text };
      });
      placed.sort(function (a, b) { return a.time - b.time; });
      if (placed.length > MAX_MARKERS) { placed = placed.slice(placed.length - MAX_MARKERS); }
      series.setMarkers(placed);
      box.setAttribute("data-markers", String(placed.length));
      box.setAttribute("data-marked-fills", String(marked.fills));
      box.setAttribute("data-marked-signals", String(marked.signals));
    }
    function fill(f) { return { t: secs(f.ts_ns), side: String(f.side).toLowerCase(), qty: f.qty }; }  // what a marker needs of a fill
    function describe(last) {
      box.setAttribute("data-candles", String(state.times.length));
      box.setAttribute("data-last-candle", state.lastNs === null ? "" : String(state.lastNs));
      box.setAttribute("data-last-close", last ? String(last.close) : "");
      summary.textContent = state.times.length + " candles of " + state.timeframe +
        (last ? ", the last from " + last.time + ": open " + last.open + ", high " + last.high + ", low " + last.low +
                ", close " + last.close + (last.closed ? "" : " (still forming)") : "");
    }
    function bars(since) {
      return api("/bots/" + id + "/bars?limit=" + CANDLES + "&timeframe=" + encodeURIComponent(state.timeframe) +
                 (since === null ? "" : "&since=" + since));
    }
    function load() {
      return bars(null).then(function (page) {
        var data = [], times = [];
        page.bars.forEach(function (b) {
          var c = candle(b);
          if (data.length && data[data.length - 1].time === c.time) { data[data.length - 1] = c; times[times.length - 1] = c.time; }
          else { data.push(c); times.push(c.time); }
        });
        state.times = times;
        state.lastNs = page.bars.length ? page.bars[page.bars.length - 1].time_ns : null;
        series.setData(data);
        note.textContent = page.note || "";
        marks();
        describe(page.bars[page.bars.length - 1]);
        chart.timeScale().fitContent();
      });
    }
    function poll() {
      if (state.busy || document.hidden) { return; }
      state.busy = true;
      var tf = state.timeframe;
      Promise.all([
        bars(state.lastNs),
        api("/bots/" + id + "/fills?limit=1000&after_id=" + state.fillAfter),
        api("/signals?limit=1000&bot_id=" + encodeURIComponent(bot.runtime_id) + "&cursor=" + state.signalCursor),
        api("/bots/" + id + "/orders?limit=50&offset=0")
      ]).then(function (r) {
        if (tf !== state.timeframe) { return; }  // switched meanwhile: load() drew the new one
        var page = r[0];
        if (state.lastNs === null && page.bars.length) { return load(); }
        page.bars.forEach(function (b) {
          var c = candle(b);
          var last = state.times.length ? state.times[state.times.length - 1] : null;
          if (last !== null && c.time < last) { return; }
          series.update(c);
          if (last === null || c.time > last) { state.times.push(c.time); }
          state.lastNs = b.time_ns;
        });
        var more = false;
        if (r[1].length) { state.fills = state.fills.concat(r[1].map(fill)).slice(-MAX_FILLS); state.fillAfter = r[1][r[1].length - 1].id; more = true; }
        if (r[2].items.length) {
          state.signals = state.signals.concat(r[2].items).slice(-MAX_MARKERS);
          state.signalCursor = r[2].items[r[2].items.length - 1].id;
          more = true;
        }
        r[3].forEach(function (o) { if (!state.orders[o.client_order_id] || state.orders[o.client_order_id].state !== o.state) { more = true; } state.orders[o.client_order_id] = o; });
        orderList = Object.keys(state.orders).map(function (k) { return state.orders[k]; }).slice(-MAX_MARKERS);
        if (more || page.bars.length) { marks(); }
        if (page.note !== undefined) { note.textContent = page.note || ""; }
        describe(page.bars[page.bars.length - 1]);
      }).catch(function (e) { note.textContent = "candles: " + e.message; })
        .then(function () { state.busy = false; });
    }
    chart.subscribeCrosshairMove(function (param) {
      var v = param.seriesData && param.seriesData.get(series);
      legend.textContent = v ? R.fmtTime(param.time) + "  O " + v.open + "  H " + v.high + "  L " + v.low + "  C " + v.close : "";
    });
    pick.addEventListener("change", function () {
      state.timeframe = pick.value;
      load().catch(function (e) { note.textContent = "candles: " + e.message; });
    });
    window.addEventListener("resize", function () { chart.applyOptions({ width: box.clientWidth }); });
    state.fills = fills.slice(-MAX_FILLS).map(fill);
    state.fillAfter = fills.length ? fills[fills.length - 1].id : 0;
    state.signals = signals.slice(-MAX_MARKERS);
    state.signalCursor = signals.length ? signals[signals.length - 1].id : 0;
    return api("/bots/" + id + "/orders?limit=200&offset=0").then(function (rows) {
      rows.forEach(function (o) { state.orders[o.client_order_id] = o; });
      orderList = rows.slice().reverse();
      return load();
    }).catch(function (e) { note.textContent = "candles: " + e.message; })
      .then(function () { state.timer = setInterval(poll, POLL_MS); return chart; });
  }

  function drawBot(charts, key, bot, fills, signals, equity) {
    /* The candles (candleChart), then equity and drawdown from the bar points. charts.moreEquity(rows)
     * appends points read later (?after=<last ts_ns>) in place: series.update, no redraw. */
    var R = window.TickbridgeReport;
    var peak = -Infinity, lastTime = null, count = 0;
    var eq = [], dd = [];
    function point(p) {
      /* one bar point -> its equity and drawdown points (same: a second point in the same second,
       * which replaces the one before); null for a point older than the last drawn */
      var e = { time: secs(p.ts_ns), value: Number(p.equity) };
      if (lastTime !== null && e.time < lastTime) { return null; }
      peak = Math.max(peak, e.value);
      var same = e.time === lastTime;
      if (!same) { count += 1; }
      lastTime = e.time;
      return { eq: e, dd: { time: e.time, value: peak > 0 ? (e.value / peak - 1) * 100 : 0 }, same: same };
    }
    equity.forEach(function (p) {
      var x = point(p);
      if (!x) { return; }
      if (x.same) { eq[eq.length - 1] = x.eq; dd[dd.length - 1] = x.dd; } else { eq.push(x.eq); dd.push(x.dd); }
    });
    // The chart gets the curves' envelope (decimated: each bucket's min and max of both, at most
    // MAX_DRAWN points), the page keeps every point: 10,000 bar points draw as 2,000 that look the
    // same. data-points says how many there are, data-drawn how many the chart library was given.
    var drawnCount = 0;
    function envelope() {
      var kept = decimated(eq.map(function (p) { return p.time; }),
                           [eq.map(function (p) { return p.value; }), dd.map(function (p) { return p.value; })], [], MAX_DRAWN);
      drawnCount = kept.length;
      return { eq: kept.map(function (i) { return eq[i]; }), dd: kept.map(function (i) { return dd[i]; }) };
    }
    var first = envelope();
    var pricePane = el("section", { "class": "tb-pane", "aria-label": "candles" });
    charts.appendChild(pricePane);
    var series = {}, boxes = {};
    [["equity", first.eq, "equity"], ["drawdown %", first.dd, "drawdown"]].forEach(function (spec) {
      var pane = el("section", { "class": "tb-pane", "aria-label": spec[0] });
      pane.appendChild(el("h2", { id: "title-" + spec[2] }, spec[0]));
      var box = el("div", { "class": "tb-chart", id: "chart-" + spec[2], role: "img", "aria-labelledby": "title-" + spec[2],
                            "aria-description": count + " points", "data-points": String(count),
                            "data-drawn": String(spec[1].length) });
      pane.appendChild(box);
      charts.appendChild(pane);
      var chart = R.chart(box, 180);
      series[spec[2]] = chart.addLineSeries({ color: spec[2] === "drawdown" ? "#c62828" : "#1565c0", lineWidth: 1 });
      series[spec[2]].setData(spec[1]);
      chart.timeScale().fitContent();
      boxes[spec[2]] = box;
    });
    charts.setAttribute("data-equity-after", equity.length ? String(equity[equity.length - 1].ts_ns) : "-1");
    charts.moreEquity = function (rows) {
      /* new points join in place (series.update); past the bound, the envelope is drawn again, once */
      var fresh = [], adds = 0;
      rows.forEach(function (p) {
        var x = point(p);
        if (!x) { return; }
        if (x.same) { eq[eq.length - 1] = x.eq; dd[dd.length - 1] = x.dd; } else { eq.push(x.eq); dd.push(x.dd); adds += 1; }
        fresh.push(x);
      });
      if (drawnCount + adds <= MAX_DRAWN) {
        fresh.forEach(function (x) { series.equity.update(x.eq); series.drawdown.update(x.dd); });
        drawnCount += adds;
      } else {
        var again = envelope();
        series.equity.setData(again.eq); series.drawdown.setData(again.dd);
      }
      if (rows.length) { charts.setAttribute("data-equity-after", String(rows[rows.length - 1].ts_ns)); }
      ["equity", "drawdown"].forEach(function (k) {
        boxes[k].setAttribute("data-points", String(count));
        boxes[k].setAttribute("data-drawn", String(drawnCount));
        boxes[k].setAttribute("aria-description", count + " points");
      });
    };
    charts.setAttribute("data-fills", String(fills.length));
    charts.setAttribute("data-signals", String(signals.length));
    return candleChart(pricePane, key, bot, fills, signals);
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
    /* Many signals a second (issue 19 item 5: 1,000/s must not freeze the page): each message is
     * only counted and queued; one animation frame renders the queue at once, only its newest
     * FEED_ROWS (older ones would be cut anyway), and the table keeps FEED_ROWS rows. The count of
     * every signal received and the pause button stay live whatever the rate. */
    var bar = el("div", { "class": "controls", role: "group", "aria-label": "live feed" });
    var pause = el("button", { type: "button", id: "feed-pause", "aria-pressed": "false" }, "pause the feed");
    var count = el("p", { id: "feed-count", "data-count": "0", "data-shown": "0" }, "0 signals received since this page opened");
    bar.appendChild(pause); bar.appendChild(count);
    main.appendChild(bar);
    main.appendChild(live);
    var last = 0, pending = [], scheduled = false, received = 0, paused = false;
    function describe() {
      count.setAttribute("data-count", String(received));
      count.setAttribute("data-shown", String(body.rows.length));
      count.textContent = received + " signals received since this page opened, the newest " + body.rows.length +
        " shown" + (paused ? " (paused: " + pending.length + " waiting)" : "");
    }
    function flush() {
      scheduled = false;
      if (!paused && pending.length) {
        var frag = document.createDocumentFragment();
        pending.splice(0).slice(-FEED_ROWS).reverse().forEach(function (s) {
          var tr = el("tr", { "data-bot": s.bot_id });
          [s.id, new Date(Number(s.ts) / 1e6).toISOString(), s.bot_id, s.symbol, s.direction, s.confidence,
           s.model_id, s.model_version].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
          frag.appendChild(tr);
        });
        body.insertBefore(frag, body.firstChild);
        while (body.rows.length > FEED_ROWS) { body.deleteRow(-1); }
      }
      describe();
    }
    function schedule() { if (!scheduled) { scheduled = true; requestAnimationFrame(flush); } }
    function add(s) {
      if (s.id <= last) { return; }
      last = s.id;
      received += 1;
      pending.push(s);
      if (pending.length > 2 * FEED_ROWS) { pending.splice(0, pending.length - FEED_ROWS); }  // paused: keep the newest
      schedule();
    }
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "resume the feed" : "pause the feed";
      schedule();
    });
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

  /* --- forms: the API validates; the page shows its 422 message next to the field it names --- */

  function fieldBox(form, name, label, input, hint) {
    /* A labelled input with a slot for the API's message about it (name: the API's dotted field) */
    var id = "f-" + name.replace(/[^a-z0-9_-]/gi, "-");
    input.id = id; input.name = name; input.setAttribute("data-field", name);
    var box = el("div", { "class": "field" });
    box.appendChild(el("label", { "for": id }, label));
    box.appendChild(input);
    var described = [];
    if (hint) { var h = el("small", { id: id + "-hint" }, hint); box.appendChild(h); described.push(h.id); }
    var err = el("p", { "class": "field-error", id: id + "-error", "data-error-for": name });
    box.appendChild(err); described.push(err.id);
    input.setAttribute("aria-describedby", described.join(" "));
    form.appendChild(box);
    return input;
  }

  function inputOf(type, attrs) { return el("input", Object.assign({ type: type }, attrs || {})); }

  function selectOf(values) {
    var s = el("select");
    values.forEach(function (v) { s.appendChild(el("option", { value: v }, v)); });
    return s;
  }

  function clearErrors(form) {
    Array.prototype.forEach.call(form.querySelectorAll(".field-error, .form-error"), function (p) { p.textContent = ""; });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (i) { i.removeAttribute("aria-invalid"); });
  }

  function showError(form, e) {
    /* The API's message next to the input it names: the exact field ("risk.default_bot.max_order_qty"),
     * else the nearest named parent ("params.fast" -> params), else at the top of the form. */
    var field = e.field || "", input = null;
    while (field && !input) {
      input = form.querySelector("[data-field='" + field.replace(/'/g, "") + "']");
      field = field.indexOf(".") >= 0 ? field.slice(0, field.lastIndexOf(".")) : "";
    }
    var text = e.field && input && input.getAttribute("data-field") !== e.field ? e.field + ": " + e.message : e.message;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      form.querySelector("[data-error-for='" + input.getAttribute("data-field") + "']").textContent = text;
      input.focus();
    } else {
      var top = form.querySelector(".form-error");
      top.textContent = (e.field ? e.field + ": " : "") + e.message;
      top.focus();
    }
  }

  var BOT_LIMITS = [["max_order_qty", "max order quantity"], ["max_order_notional", "max order notional"],
                    ["max_position_qty", "max position quantity"], ["max_gross_exposure", "max gross exposure"],
                    ["max_open_orders", "max open orders", "1"], ["max_orders_per_second", "max orders per second", "1"],
                    ["daily_loss_limit", "daily loss limit"], ["max_drawdown_pct", "max drawdown %"],
                    ["price_band_pct", "price band %"], ["capital_allocation", "capital allocation"]];

  function botFormPage(main, key) {
    /* Create (no key: POST /bots) or edit (PUT /bots/{key}: a new version) a bot's config. An edit
     * starts from the stored config, so what the form does not show (the tick guard, the account's
     * limits, market hours...) is sent back as it was. Numbers go as the input's text (decimal
     * strings, exact); params as the JSON typed, or the text itself when it is not JSON, for the
     * API to refuse. */
    var editing = key !== "" && key !== undefined && key !== null;
    var load = editing ? api("/bots/" + encodeURIComponent(key)).then(function (b) { return b.config || {}; })
                       : Promise.resolve({ venue: "paper", bar: "1min", account: "default", on_stop: "cancel", params: {} });
    return load.then(function (config) {
      main.textContent = "";
      main.appendChild(el("h1", { id: "form-title" }, editing ? "edit bot " + key : "new bot"));
      var form = el("form", { id: "bot-form", "aria-labelledby": "form-title" });
      form.appendChild(el("p", { "class": "form-error", role: "alert", tabindex: "-1" }));
      var inputs = {};
      if (!editing) { inputs.id = fieldBox(form, "id", "name", inputOf("text", { required: "" }), "a-z, 0-9, _ and -"); }
      inputs.strategy = fieldBox(form, "strategy", "strategy", inputOf("text", { required: "" }), "e.g. sma_cross");
      inputs.params = fieldBox(form, "params", "parameters (JSON)", el("textarea", { rows: "3" }), 'e.g. {"fast": 5, "slow": 20}');
      inputs.symbol = fieldBox(form, "symbol", "symbol", inputOf("text", { required: "" }));
      inputs.venue = fieldBox(form, "venue", "venue", selectOf(["paper", "ccxt", "alpaca", "mt5"]));
      inputs.account = fieldBox(form, "account", "broker account", inputOf("text", { required: "" }));
      inputs.data = fieldBox(form, "data", "data source (paper)", inputOf("text"), "a name from GET /data-sources; empty: the runtime's feed");
      inputs.bar = fieldBox(form, "bar", "bar", inputOf("text", { required: "" }), "e.g. 1min, 5min, 1h");
      inputs.cash = fieldBox(form, "cash", "cash", inputOf("number", { step: "any" }));
      inputs.commission = fieldBox(form, "commission", "commission (fraction of notional)", inputOf("number", { step: "any" }));
      inputs.on_stop = fieldBox(form, "on_stop", "on stop, open orders are", selectOf(["cancel", "keep"]));
      var limitsBox = el("fieldset", { id: "bot-form-limits" });
      limitsBox.appendChild(el("legend", {}, "risk limits of this bot (empty: no limit)"));
      form.appendChild(limitsBox);
      var risk = config.risk || {}, mine = risk.default_bot || {};
      BOT_LIMITS.forEach(function (l) {
        inputs["risk.default_bot." + l[0]] = fieldBox(limitsBox, "risk.default_bot." + l[0], l[1],
                                                       inputOf("number", { step: l[2] || "any" }));
      });
      ["strategy", "symbol", "venue", "account", "data", "bar", "cash", "commission", "on_stop"].forEach(function (k) {
        if (config[k] !== undefined && config[k] !== null) { inputs[k].value = String(config[k]); }
      });
      inputs.params.value = JSON.stringify(config.params || {});
      BOT_LIMITS.forEach(function (l) {
        if (mine[l[0]] !== undefined && mine[l[0]] !== null) { inputs["risk.default_bot." + l[0]].value = String(mine[l[0]]); }
      });
      var save = el("button", { type: "submit", id: "bot-form-save" }, editing ? "save a new version" : "create the bot");
      form.appendChild(save);
      main.appendChild(form);
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        clearErrors(form);
        var out = JSON.parse(JSON.stringify(config));  // what the form does not show stays as stored
        delete out.id;
        if (!editing) { out.id = inputs.id.value; }
        ["strategy", "symbol", "venue", "account", "bar", "on_stop"].forEach(function (k) { out[k] = inputs[k].value; });
        ["data", "cash", "commission"].forEach(function (k) {
          if (inputs[k].value === "") { delete out[k]; } else { out[k] = inputs[k].value; }
        });
        var text = inputs.params.value.trim();
        try { out.params = text === "" ? {} : JSON.parse(text); } catch (_) { out.params = text; }  // the API says what is wrong
        var limits = Object.assign({}, mine);
        BOT_LIMITS.forEach(function (l) {
          var v = inputs["risk.default_bot." + l[0]].value;
          if (v === "") { delete limits[l[0]]; } else { limits[l[0]] = l[2] ? Number(v) : v; }
        });
        var r = Object.assign({}, risk);
        if (Object.keys(limits).length) { r.default_bot = limits; } else { delete r.default_bot; }
        if (Object.keys(r).length) { out.risk = r; } else { delete out.risk; }
        save.disabled = true;
        api(editing ? "/bots/" + encodeURIComponent(key) : "/bots", { method: editing ? "PUT" : "POST", body: out })
          .then(function (bot) {
            say((editing ? "saved version " : "created, version ") + bot.version);
            location.assign("/bots/" + encodeURIComponent(me.role === "admin" ? bot.runtime_id : bot.id));
          }, function (e) { save.disabled = false; showError(form, e); });
      });
    });
  }

  /* --- notifications: the caller's rules (api/notify/router.py) and their delivery log --- */

  var NOTIFY = "/notifications";
  var KINDS = ["fill", "signal", "bot_state", "daily_loss", "price"];
  var STOPS = ["KILLED", "ERROR", "STORE_ERROR", "LEASE_LOST", "STOPPED", "END_OF_FEED"];

  function nsTime(ns) { return ns === null || ns === undefined ? "" : new Date(Number(ns) / 1e6).toISOString(); }

  function ruleForm(onSaved) {
    /* One form for a new rule (POST) and an edited one (PUT; a secret or token left empty keeps the
     * stored one). Only the chosen channel's inputs show and go in the body. form.edit(rule) fills it. */
    var form = el("form", { id: "rule-form", "aria-labelledby": "rule-form-title" });
    var title = el("h2", { id: "rule-form-title" }, "new rule");
    form.appendChild(title);
    form.appendChild(el("p", { "class": "form-error", role: "alert", tabindex: "-1" }));
    var editing = null;
    var f = {};
    f.name = fieldBox(form, "name", "rule name", inputOf("text"));
    f.kind = fieldBox(form, "kind", "when", selectOf(KINDS));
    f.bot_id = fieldBox(form, "bot_id", "bot", inputOf("text"), "your bot's name (a subscriber: its runtime id); empty: every bot");
    f.symbol = fieldBox(form, "symbol", "symbol (price alerts)", inputOf("text"));
    f.level = fieldBox(form, "level", "price level (price alerts)", inputOf("number", { step: "any" }));
    f.direction = fieldBox(form, "direction", "crossing (price alerts)", selectOf(["", "above", "below"]));
    var stops = el("fieldset", { "data-field": "stop_reasons", tabindex: "-1", id: "f-stop_reasons" });
    stops.appendChild(el("legend", {}, "stop reasons (bot_state; none ticked: KILLED, ERROR, STORE_ERROR, LEASE_LOST)"));
    STOPS.forEach(function (r) {
      var box = inputOf("checkbox", { id: "f-stop-" + r, value: r });
      var label = el("label", { "for": box.id }, r);
      stops.appendChild(box); stops.appendChild(label);
    });
    stops.appendChild(el("p", { "class": "field-error", id: "f-stop_reasons-error", "data-error-for": "stop_reasons" }));
    stops.setAttribute("aria-describedby", "f-stop_reasons-error");
    form.appendChild(stops);
    f.channel = fieldBox(form, "channel", "channel", selectOf(["webhook", "telegram", "email"]));
    var groups = {};
    // text inputs, not url/email ones: the API's message says what is wrong with an address, not the browser's
    [["webhook", [["url", "webhook URL", "text"], ["secret", "webhook secret (empty: generated, or the stored one kept)", "password"]]],
     ["telegram", [["chat_id", "Telegram chat id", "text"], ["bot_token", "Telegram bot token (empty on an edit: kept)", "password"]]],
     ["email", [["address", "email address", "text"]]]].forEach(function (g) {
      var set = el("fieldset", { "data-channel": g[0] });
      set.appendChild(el("legend", {}, g[0]));
      g[1].forEach(function (x) {
        f[g[0] + "." + x[0]] = fieldBox(set, "channel." + g[0] + "." + x[0], x[1], inputOf(x[2], { autocomplete: "off" }));
      });
      groups[g[0]] = set;
      form.appendChild(set);
    });
    f.enabled = fieldBox(form, "enabled", "enabled", inputOf("checkbox", { checked: "" }));
    function showChannel() { Object.keys(groups).forEach(function (k) { groups[k].hidden = k !== f.channel.value; }); }
    f.channel.addEventListener("change", showChannel);
    showChannel();
    var save = el("button", { type: "submit", id: "rule-save" }, "create the rule");
    var cancel = el("button", { type: "button", id: "rule-cancel", hidden: "" }, "cancel the edit");
    form.appendChild(save); form.appendChild(cancel);
    var secretNote = el("p", { id: "rule-secret", role: "status" });
    form.appendChild(secretNote);
    function reset() {
      editing = null; form.reset(); clearErrors(form); showChannel();
      title.textContent = "new rule"; save.textContent = "create the rule"; cancel.hidden = true;
    }
    cancel.addEventListener("click", reset);
    form.edit = function (rule) {
      reset();
      editing = rule;
      title.textContent = "edit rule " + rule.id + (rule.name ? " (" + rule.name + ")" : "");
      save.textContent = "save the rule"; cancel.hidden = false;
      ["name", "kind", "bot_id", "symbol", "level", "direction"].forEach(function (k) {
        f[k].value = rule[k] === null || rule[k] === undefined ? "" : String(rule[k]);
      });
      STOPS.forEach(function (r) { document.getElementById("f-stop-" + r).checked = (rule.stop_reasons || []).indexOf(r) >= 0; });
      var ch = rule.channel || {};
      f.channel.value = ch.type; showChannel();
      if (ch.type === "webhook") { f["webhook.url"].value = ch.url || ""; }
      if (ch.type === "telegram") { f["telegram.chat_id"].value = ch.chat_id || ""; }
      if (ch.type === "email") { f["email.address"].value = ch.address || ""; }
      f.enabled.checked = !!rule.enabled;
      f.name.focus();
    };
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      clearErrors(form);
      secretNote.textContent = "";
      var body = { name: f.name.value, kind: f.kind.value, enabled: f.enabled.checked };
      ["bot_id", "symbol", "level", "direction"].forEach(function (k) { if (f[k].value !== "") { body[k] = f[k].value; } });
      var ticked = STOPS.filter(function (r) { return document.getElementById("f-stop-" + r).checked; });
      if (ticked.length) { body.stop_reasons = ticked; }
      var type = f.channel.value, channel = { type: type };
      if (type === "webhook") { channel.url = f["webhook.url"].value; if (f["webhook.secret"].value) { channel.secret = f["webhook.secret"].value; } }
      if (type === "telegram") { channel.chat_id = f["telegram.chat_id"].value; if (f["telegram.bot_token"].value) { channel.bot_token = f["telegram.bot_token"].value; } }
      if (type === "email") { channel.address = f["email.address"].value; }
      body.channel = channel;
      save.disabled = true;
      api(NOTIFY + "/rules" + (editing ? "/" + editing.id : ""), { method: editing ? "PUT" : "POST", body: body })
        .then(function (rule) {
          save.disabled = false;
          var was = editing;
          reset();
          say((was ? "saved rule " : "created rule ") + rule.id);
          if (rule.secret) {  // in this answer only: the API never shows it again
            secretNote.textContent = "rule " + rule.id + ": its webhook secret, shown this once: " + rule.secret;
          }
          onSaved();
        }, function (e) { save.disabled = false; showError(form, e); });
    });
    return form;
  }

  function notificationsPage(main) {
    main.textContent = "";
    main.appendChild(el("h1", {}, "notifications"));
    var rulesBox = el("section", { id: "rules", "aria-labelledby": "rules-title" });
    rulesBox.appendChild(el("h2", { id: "rules-title" }, "your rules"));
    var rulesTable = el("div");
    rulesBox.appendChild(rulesTable);
    var result = el("p", { id: "rule-result", role: "status" });
    rulesBox.appendChild(result);
    main.appendChild(rulesBox);
    var form = ruleForm(function () { loadRules(); log.refresh(); });
    main.appendChild(form);
    var logBox = el("section", { id: "deliveries", "aria-labelledby": "deliveries-title" });
    logBox.appendChild(el("h2", { id: "deliveries-title" }, "delivery log"));
    var log = pager("deliveries, newest first", ["id", "created", "rule", "event", "channel", "status", "attempts",
                                                 "last HTTP status", "last error", "sent"],
      function (before) {
        return api(NOTIFY + "/deliveries?limit=" + PAGE + (before ? "&before=" + before : ""))
          .then(function (page) { return { rows: page.items, next: page.next_cursor }; });
      },
      function (d) { return [d.id, nsTime(d.created_ns), d.rule_id, d.event_kind, d.channel, d.status, d.attempts,
                             d.last_http_status, d.last_error, nsTime(d.sent_ns)]; });
    logBox.appendChild(log);
    main.appendChild(logBox);
    function action(label, name, fn) {
      var b = el("button", { type: "button", "aria-label": label + " " + name, "data-action": label }, label);
      b.addEventListener("click", fn);
      return b;
    }
    function loadRules() {
      return api(NOTIFY + "/rules").then(function (rules) {
        var t = table(rules.length + " rules", ["id", "name", "when", "bot", "filter", "channel", "enabled", "actions"], rules,
          function (r) {
            var ch = r.channel || {};
            var name = "rule " + r.id + (r.name ? " (" + r.name + ")" : "");
            var acts = el("span", { "class": "actions" });
            acts.appendChild(action("edit", name, function () { form.edit(r); }));
            acts.appendChild(action("send a test", name, function () {
              result.textContent = "sending a test through " + name + "...";
              api(NOTIFY + "/rules/" + r.id + "/test", { method: "POST" }).then(function (d) {
                result.textContent = name + ": test " + d.status + (d.last_http_status ? " (HTTP " + d.last_http_status + ")" : "") +
                  (d.last_error ? ": " + d.last_error : "");
                result.setAttribute("data-test-status", d.status);
                log.refresh();
              }, function (e) { result.textContent = name + ": " + e.message; });
            }));
            acts.appendChild(action("delete", name, function () {
              if (!window.confirm("Delete " + name + "? Its delivery log stays.")) { return; }
              api(NOTIFY + "/rules/" + r.id, { method: "DELETE" }).then(function () { say("deleted " + name); loadRules(); },
                function (e) { result.textContent = name + ": " + e.message; });
            }));
            var filter = r.kind === "price" ? r.symbol + " " + r.direction + " " + r.level
              : r.kind === "bot_state" ? (r.stop_reasons || []).join(", ") : (r.symbol || "");
            return [r.id, r.name, r.kind, r.bot_id || "every bot", filter,
                    ch.type + ": " + (ch.url || ch.chat_id || ch.address || ""), r.enabled ? "yes" : "no", acts];
          });
        t.id = "rules-table";
        Array.prototype.forEach.call(t.tBodies[0].rows, function (tr, i) { tr.setAttribute("data-rule", String(rules[i].id)); });
        rulesTable.textContent = "";
        rulesTable.appendChild(t);
      });
    }
    return loadRules();
  }

  function rows(value) {
    /* A table of the stored result: the API stores the full shape (format version 1, a list of
     * records: backtest.report.to_json_dict(full=True)); anything else draws as empty. */
    return Array.isArray(value) ? value : [];
  }

  function seconds(t) {
    /* an ISO time, or ns / ms / s since the epoch, as unix seconds */
    if (typeof t === "number") { return t > 1e17 ? Math.floor(t / 1e9) : t > 1e11 ? Math.floor(t / 1e3) : Math.floor(t); }
    return Math.floor(Date.parse(t) / 1000);
  }

  function statText(v) {
    /* as the CLI's report writes a statistic: six significant digits, n/a for an undefined one */
    if (v === null || v === undefined) { return "n/a"; }
    if (typeof v !== "number") { return String(v); }
    return Number.isInteger(v) ? v.toLocaleString("en-US") : Number(v.toPrecision(6)).toLocaleString("en-US", { maximumFractionDigits: 12 });
  }

  var MAX_POINTS = 4000;

  function decimated(times, series, trades, bound) {
    /* The positions to draw of a long run, as backtest/report_html.py decimates the CLI's report:
     * each bucket's min and max of every series, and every bar a trade entered or left, so a
     * million bars draw as a few thousand points that look the same and carry every trade. */
    // bound: the positions kept at most, both ends included (the bot page's charts: MAX_DRAWN, with
    // no trades); none: the report's MAX_POINTS as report_html.py has it, its trades on top
    var n = times.length, keep = {}, out = [], most = bound || MAX_POINTS;
    if (n <= most) { for (var k = 0; k < n; k++) { out.push(k); } return out; }
    var buckets = Math.floor((bound ? bound - 2 : MAX_POINTS) / 2 / series.length);
    series.forEach(function (values) {
      for (var b = 0; b < buckets; b++) {
        var lo = Math.floor(b * n / buckets), hi = Math.floor((b + 1) * n / buckets), min = lo, max = lo;
        for (var i = lo; i < hi; i++) { if (values[i] < values[min]) { min = i; } if (values[i] > values[max]) { max = i; } }
        keep[min] = true; keep[max] = true;
      }
    });
    function at(t) { var lo = 0, hi = n - 1; while (lo < hi) { var mid = (lo + hi + 1) >> 1; if (times[mid] <= t) { lo = mid; } else { hi = mid - 1; } } return lo; }
    trades.forEach(function (t) { keep[at(t.entry_time)] = true; keep[at(t.exit_time)] = true; });
    keep[0] = true; keep[n - 1] = true;
    return Object.keys(keep).map(Number).sort(function (a, b) { return a - b; });
  }

  function fromResult(job, result) {
    /* A job's stored result (backtest.report.to_json_dict) as the report's model. */
    var times = [], equity = [], drawdown = [], peak = -Infinity;
    rows(result.equity).forEach(function (p) {
      var t = seconds(p.time), v = Number(p.equity);
      if (isNaN(t) || isNaN(v)) { return; }
      if (times.length && times[times.length - 1] >= t) { if (times[times.length - 1] > t) { return; } times.pop(); equity.pop(); drawdown.pop(); }
      peak = Math.max(peak, v);
      times.push(t); equity.push(v); drawdown.push(peak > 0 ? (v / peak - 1) * 100 : 0);
    });
    var num = function (v) { return v === null || v === undefined || v === "" ? null : Number(v); };
    var trades = rows(result.trades).map(function (t) {
      return { side: t.side, entry_time: seconds(t.entry_time), exit_time: seconds(t.exit_time),
               entry_price: num(t.entry_price), exit_price: num(t.exit_price), size: num(t.size), fees: num(t.fees),
               pnl: num(t.pnl), return_pct: num(t.return_pct) };
    });
    var kept = decimated(times, [equity, drawdown], trades);
    var pick = function (a) { return kept.map(function (i) { return a[i]; }); };
    times = pick(times); equity = pick(equity); drawdown = pick(drawdown);
    var stats = Object.keys(result.stats || {}).filter(function (k) {
      var v = result.stats[k]; return v === null || typeof v !== "object";
    }).map(function (k) { return [k, statText(result.stats[k])]; });
    var meta = result.meta || {};
    var title = "backtest " + job + (meta.strategy ? ": " + meta.strategy + (meta.symbol ? " on " + meta.symbol : "") : "");
    return { title: title, note: result.note, stats: stats, trades: trades,
             series: { time: times, equity: equity, drawdown: drawdown } };
  }

  function backtestPage(main, job) {
    return api("/backtests/" + encodeURIComponent(job) + "/result").then(function (result) {
      var model = fromResult(job, result);
      var panes = window.TickbridgeReport.render(main, model);
      // the stored result has no price series: the trades go on the equity curve instead
      var eq = panes.filter(function (p) { return p.name === "equity"; })[0];
      if (eq) {
        var first = model.series.time[0], last = model.series.time[model.series.time.length - 1];
        eq.series.setMarkers(window.TickbridgeReport.markers(model.trades).filter(function (m) {
          return m.time >= first && m.time <= last;
        }));
      }
      main.setAttribute("data-trades", String(model.trades.length));
      main.setAttribute("data-points", String(model.series.time.length));
    }, function (e) {
      if (e.status !== 409) { throw e; }
      main.textContent = "";
      main.appendChild(el("h1", {}, "backtest " + job));
      main.appendChild(el("p", { role: "status" }, e.message));  // queued, running or failed: the API's words
    });
  }

  function backtestsPage(main) {
    return api("/backtests").then(function (jobs) {
      main.textContent = "";
      main.appendChild(el("h1", {}, "backtests"));
      main.appendChild(table(jobs.length + " backtest jobs, newest first", ["job", "strategy", "data", "status", "submitted",
                                                                          "finished", "error"], jobs,
        function (j) {
          var r = j.request || {};
          return [el("a", { href: "/backtests/" + encodeURIComponent(j.id) }, j.id.slice(0, 12)), r.strategy, r.data,
                  j.status, j.created_at, j.finished_at, j.error];
        }));
    });
  }

  function accountsPage(main) {
    /* Each of the caller's broker accounts (GET /accounts) with its books (GET /accounts/{id}/pnl):
     * the account's risk state, P&L summed over its bots, each bot's P&L, and the positions the bots
     * hold against what the venue says it holds (external = venue - bots). Amounts are the API's text. */
    return api("/accounts").then(function (accounts) {
      main.textContent = "";
      main.appendChild(el("h1", {}, "accounts"));
      if (!accounts.length) {
        main.appendChild(el("p", {}, "no broker accounts: bots trade on the built-in paper account (POST /api/v1/accounts adds one)"));
        return;
      }
      return Promise.all(accounts.map(function (a) {
        var box = el("section", { "class": "account", id: "account-" + a.id, "aria-labelledby": "account-title-" + a.id });
        box.appendChild(el("h2", { id: "account-title-" + a.id }, a.name + " (" + a.venue + ")"));
        main.appendChild(box);
        return api("/accounts/" + encodeURIComponent(a.id) + "/pnl").then(function (p) {
          var st = p.state || {};
          box.appendChild(el("p", { "class": "account-state", "data-state": st.state || "" },
                             "risk state " + st.state + (st.reason ? " (" + st.reason + ")" : "") +
                             (st.changed_ts ? ", since " + st.changed_ts : "")));
          var dl = el("dl", { "class": "sums", "aria-label": a.name + ": P&L over its bots" });
          [["realized", p.realized], ["fees", p.fees], ["unrealized", p.unrealized], ["day P&L", p.day_pnl]]
            .forEach(function (kv) {
              dl.appendChild(el("dt", {}, kv[0]));
              dl.appendChild(el("dd", { "data-sum": kv[0] }, kv[1]));
            });
          box.appendChild(dl);
          box.appendChild(table(a.name + ": P&L per bot", ["bot", "realized", "fees", "equity", "unrealized", "positions", "exposure"],
            p.bots, function (b) {
              var held = b.positions.map(function (x) { return x.symbol + " " + x.qty; }).join(", ");
              return [b.retired ? b.bot_id + " (retired)" : el("a", { href: "/bots/" + encodeURIComponent(b.bot_id) }, b.bot_id),
                      b.realized, b.fees, b.equity, b.unrealized, held, b.risk ? b.risk.exposure : ""];
            }));
          box.appendChild(table(a.name + ": positions, bots against the venue" + (p.venue_ts ? " (venue at " + p.venue_ts + ")" : ""),
            ["symbol", "bots", "venue", "external"], p.positions,
            function (x) { return [x.symbol, x.bots, x.venue, x.external]; }));
          if (p.stale_bots && p.stale_bots.length) {
            box.appendChild(el("p", { role: "note" }, "no recent heartbeat from: " + p.stale_bots.join(", ")));
          }
        }, function (e) { box.appendChild(el("p", { role: "alert", "class": "error" }, e.message)); });
      }));
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
    var signedIn = refresh();
    /* what research.js (served after this script on every page) shares: one token, one refresh,
     * one way to call the API and build the DOM */
    window.tickbridge = { api: api, el: el, say: say, signedIn: signedIn };
    signedIn.then(function () {
      document.getElementById("who").textContent = me.username + " (" + me.role + ")";
      if (me.role === "subscriber") { document.getElementById("nav-bots").hidden = true; }
      if (me.role === "subscriber") { document.getElementById("nav-backtests").hidden = true; }
      if (me.role === "subscriber") { document.getElementById("nav-accounts").hidden = true; }
      var current = { notifications: "nav-notifications", home: "nav-bots", bot: "nav-bots", botform: "nav-bots", feed: "nav-feed", backtest: "nav-backtests", backtests: "nav-backtests", accounts: "nav-accounts" }[view];
      if (current) { document.getElementById(current).setAttribute("aria-current", "page"); }
      var pages = { notifications: notificationsPage, home: home, bot: botPage, botform: botFormPage, feed: feedPage, backtest: backtestPage, backtests: backtestsPage, accounts: accountsPage };
      if (!pages[view]) { return; }  // a view another script owns (research.js: sweeps)
      return pages[view](main, arg);
    }, toLogin).catch(function (e) {
      main.textContent = "";
      main.appendChild(el("p", { role: "alert", "class": "error" }, e.message));
    });
  }

  boot();
})();
