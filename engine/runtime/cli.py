"""`tickbridge run` and `tickbridge parity`, registered on the main typer app by engine/cli.py.

    tickbridge run config/bots/demo.yaml [--state-dir var]
    tickbridge parity SESSION_ID [--state-dir var] [--database-url URL]

`run` starts every bot of the file, trades until the feeds end or SIGINT/SIGTERM, then stops
each bot cleanly (open orders cancelled or kept per its on_stop), writes the session recording
and prints a summary. Running it again resumes each bot after its checkpoint. `parity` replays a
recorded session through the backtester and prints the differences; exit status 1 if any.
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


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("parity")(parity)


def run(
    config: Annotated[Path, typer.Argument(help="runtime YAML (config/bots/...)")],
    state_dir: Annotated[Path, typer.Option(help="paper venue logs and session recordings")] = Path("var"),
) -> None:
    """Run the bots of a config file live on the paper venue; Ctrl-C stops them cleanly."""
    from engine.runtime.config import load_runtime_config
    from engine.runtime.manager import BotManager
    from engine.store.db import masked, upgrade

    runtime = load_runtime_config(config)
    url = runtime.resolved_database_url()
    upgrade(url)
    stopping = threading.Event()

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
            manager.start(bot)
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
        raise SystemExit(1)  # not typer.Exit: engine.cli.main runs click with standalone_mode=False,
        # which turns Exit into a return value that main() drops


def summary_table(manager: Any) -> Table:
    table = Table(title="bots")
    columns = ["bot", "state", "ticks", "bars", "orders", "fills", "signals", "position", "equity",
               "open orders", "cancelled on stop"]
    for c in columns:
        table.add_column(c, justify="left" if c in ("bot", "state") else "right")
    for bot_id in manager.bots():
        s = {**manager.status(bot_id), **manager.summary(bot_id)}
        table.add_row(bot_id, s.get("state", "?"), str(s.get("ticks", "")), str(s.get("bars", "")),
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
    from engine.runtime.parity import diff_table, run_parity

    report = run_parity(session_id, state_dir, database_url)
    console.print(diff_table(report))
    if not report.equal:
        raise SystemExit(1)  # see run()
