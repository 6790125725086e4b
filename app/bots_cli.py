"""`tickbridge run` and `tickbridge parity`, registered on the main typer app by app/cli.py.

    tickbridge run config/bots/demo.yaml [--state-dir var]
    tickbridge parity SESSION_ID [--state-dir var] [--database-url URL]

    tickbridge bots status ID | resume ID | reset ID [--state-dir var] [--database-url URL]

`run` starts every bot of the file, trades until the feeds end or SIGINT/SIGTERM, then stops
each bot cleanly (open orders cancelled or kept per its on_stop), writes the session recording
and prints a summary. Running it again resumes each bot after its checkpoint; a bot that has
replayed its whole feed, or that a kill halted, is not started: `run` says why for each and
exits with status 3 once the others are done. `parity` replays a recorded session through the
backtester and prints the differences; exit status 1 if any.

`bots` manages a bot in the store (no runtime may be running it): `status` says why it stopped
and what it holds, `resume` lifts a kill's halt, `reset` archives a paper bot's books (orders,
fills, position, P&L, equity points, signals: kept under an archive id) so it starts clean from
the start of its feed. Every amount is printed in currency units.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
if not console.is_terminal:  # a pipe or a log file: room for the summary table
    console = Console(width=160)


EXIT_NOT_STARTED = 3  # `run`: a bot was not started (feed exhausted, halted by a kill)

bots_app = typer.Typer(help="a bot's status, resume after a kill, reset (archive its books, start clean)",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("parity")(parity)
    app.add_typer(bots_app, name="bots")


def run(
    config: Annotated[Path, typer.Argument(help="runtime YAML (config/bots/...)")],
    state_dir: Annotated[Path, typer.Option(help="paper venue logs and session recordings")] = Path("var"),
) -> None:
    """Run the bots of a config file live on the paper venue; Ctrl-C stops them cleanly."""
    from live.config import load_runtime_config
    from live.control import BotHalted, FeedExhausted
    from live.manager import BotManager
    from engine.store.db import masked, upgrade

    runtime = load_runtime_config(config)
    url = runtime.resolved_database_url()
    upgrade(url)
    stopping = threading.Event()
    not_started: dict[str, str] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    manager = BotManager(runtime.feed, url, state_dir)
    try:
        console.print(f"session {manager.session_id}: {len(runtime.bots)} bot(s), store {masked(url)}, "
                      f"feed {runtime.feed.path} at {'max' if not runtime.feed.speed else runtime.feed.speed} speed "
                      "(Ctrl-C stops cleanly)", highlight=False)
        for bot in runtime.bots:
            if stopping.is_set():
                break
            try:
                manager.start(bot)
            except (FeedExhausted, BotHalted) as refused:
                not_started[bot.id] = str(refused)
                console.print(f"[bold yellow]not started:[/bold yellow] {refused}", highlight=False)
                continue
            reconciled = manager.summary(bot.id).get("reconciliation", {})
            console.print(f"started {bot.id} ({bot.strategy} on {bot.symbol}, {bot.bar} bars); "
                          f"reconciled: {reconciled}", highlight=False)
        while not stopping.is_set() and not manager.wait(0.2):
            pass
    finally:
        manager.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    console.print(summary_table(manager))
    console.print(f"session recorded: {state_dir / 'sessions' / str(manager.session_id)} "
                  f"(tickbridge parity {manager.session_id})", highlight=False)
    errors = manager.errors()
    for bot_id, error in errors.items():
        console.print(f"[bold red]{bot_id} failed:[/bold red] {error}", highlight=False)
    if errors:
        raise SystemExit(1)  # not typer.Exit: app.cli.main runs click with standalone_mode=False,
        # which turns Exit into a return value that main() drops
    if not_started:
        raise SystemExit(EXIT_NOT_STARTED)


def summary_table(manager: Any) -> Table:
    table = Table(title="bots")
    columns = ["bot", "state", "stopped by", "ticks", "bars", "orders", "fills", "signals", "position", "equity",
               "open orders", "cancelled on stop"]
    for c in columns:
        table.add_column(c, justify="left" if c in ("bot", "state", "stopped by") else "right")
    for bot_id in manager.bots():
        s = {**manager.status(bot_id), **manager.summary(bot_id)}
        table.add_row(bot_id, s.get("state", "?"), str(s.get("stop_reason") or ""), str(s.get("ticks", "")),
                      str(s.get("bars", "")),
                      str(s.get("orders", "")), str(s.get("fills", "")), str(s.get("signals", "")),
                      str(s.get("position", "")), str(s.get("equity", "")), str(s.get("open_orders", "")),
                      str(s.get("cancelled_on_stop", "")))
    return table


def parity(
    session_id: Annotated[str, typer.Argument(help="a session id (var/sessions/<id>)")],
    state_dir: Annotated[Path, typer.Option(help="where `run` recorded the session")] = Path("var"),
    database_url: Annotated[str | None, typer.Option(help="the store the session traded into (default: "
                                                     "TICKBRIDGE_DATABASE_URL or sqlite:///var/tickbridge.db)")] = None,
) -> None:
    """Replay a recorded session through the backtester; diff signals, orders and fills."""
    from live.parity import diff_table, run_parity

    report = run_parity(session_id, state_dir, database_url)
    console.print(diff_table(report))
    if not report.equal:
        raise SystemExit(1)  # see run()


# -- tickbridge bots ... -----------------------------------------------------------------------------
StateDir = Annotated[Path, typer.Option(help="where the paper venue logs are (as for `run`)")]
DatabaseUrl = Annotated[str | None, typer.Option(help="the store (default: TICKBRIDGE_DATABASE_URL or "
                                                      "sqlite:///var/tickbridge.db)")]


def _manager(state_dir: Path, database_url: str | None) -> Any:
    """A manager that runs nothing: for acting on one bot's books in the store."""
    from live.config import FeedConfig
    from live.manager import BotManager

    return BotManager(FeedConfig(path="."), database_url, state_dir, record=False)


@bots_app.command("status")
def bot_status(bot_id: Annotated[str, typer.Argument(help="the bot's (runtime) id")],
               state_dir: StateDir = Path("var"), database_url: DatabaseUrl = None) -> None:
    """Why the bot stopped and what it still holds."""
    from live.books import currency_of

    with _manager(state_dir, database_url) as manager:
        s = manager.status(bot_id)
    console.print(f"{bot_id}: {s['state']}" + (f", {s['stop_reason']}: {s['stop_message']}" if s.get("stop_reason")
                                               else ""), highlight=False)
    for p in s["holdings"]["positions"]:
        console.print(f"  position {p['qty']} {p['symbol']} (average price {p['avg_price']}, realized "
                      f"{p['realized_pnl']} {currency_of(p['symbol'])})", highlight=False)
    for o in s["holdings"]["open_orders"]:
        price = f" at {o['limit_price'] or o['stop_price']}" if (o["limit_price"] or o["stop_price"]) else ""
        console.print(f"  open order {o['client_order_id']}: {o['side']} {o['qty']} {o['symbol']} {o['type']}"
                      f"{price} ({o['state']})", highlight=False)


@bots_app.command("resume")
def bot_resume(bot_id: Annotated[str, typer.Argument(help="the bot's (runtime) id")],
               state_dir: StateDir = Path("var"), database_url: DatabaseUrl = None) -> None:
    """Lift the halt a kill left: the bot may be started again."""
    with _manager(state_dir, database_url) as manager:
        manager.resume(bot_id)
    console.print(f"bot {bot_id!r} resumed: it is no longer halted and may be started", highlight=False)


@bots_app.command("reset")
def bot_reset(bot_id: Annotated[str, typer.Argument(help="the bot's (runtime) id")],
              state_dir: StateDir = Path("var"), database_url: DatabaseUrl = None) -> None:
    """Archive a stopped paper bot's books (kept under an archive id) and let it start clean."""
    import getpass

    try:
        actor = f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in this environment
        actor = "cli"
    with _manager(state_dir, database_url) as manager:
        report = manager.reset(bot_id, actor)
    console.print(report["message"], highlight=False)
