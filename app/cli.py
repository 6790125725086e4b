"""The `tickbridge` command line.

Contract (other tools call it this way; keep it stable):
    tickbridge backtest --strategy NAME --data PATH [--param k=v ...] [--cash 10000]
        [--commission 0.002] [--json out.json [--json-full]] [--trades out.csv] [--plot out.png|html]

Every error a user can cause is a TickbridgeError: it is printed as one line naming the problem,
and the command exits with status 2, never with a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from app.research_cli import load_options
from engine.errors import ConfigError, TickbridgeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="tickbridge: algorithmic trading bots, one code path from backtest to live.")
console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2


def parse_param_pairs(pairs: list[str]) -> dict[str, Any]:
    """--param k=v pairs into a dict; a malformed pair is a ConfigError naming it."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("param", f"expected key=value, got {pair!r}")
        params[key.strip()] = value.strip()
    return params


def load_frame(data: Path, bar: str | None, options: Any = None) -> Any:
    """backtest.data.load_frame, with what the loader decided printed as notes."""
    from backtest.data import load_frame as load

    notes: list[str] = []
    try:
        return load(data, bar, options, notes)
    finally:
        print_notes(notes)


def print_notes(notes: list[str]) -> None:
    """What the data loader decided that the user should know (rows sorted, a column ignored)."""
    for note in notes:
        err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)


StrategyOption = Annotated[str, typer.Option(
    help="a strategy name (sma_cross, rsi_reversion, ml_signal, one in --strategies-dir or an installed "
         "package's), or your own class: path/to/file.py:Class or package.module:Class")]
StrategiesDirOption = Annotated[Path | None, typer.Option(
    help="a directory of your strategies: every Strategy subclass with a `name` in its *.py files "
         "(default: TICKBRIDGE_STRATEGIES_DIR)")]


def resolve_cli_strategy(ref: str, strategies_dir: Path | None) -> Any:
    """The strategy class a command line names. The command line is the operator's own, so file
    and module references are allowed here (never through the API: strategies/registry.py)."""
    from strategies.registry import resolve_strategy, set_strategies_dir

    if strategies_dir is not None:
        set_strategies_dir(strategies_dir)
    return resolve_strategy(ref, allow_code_refs=True)


@app.command()
@load_options
def backtest(
    strategy: StrategyOption,
    data: Annotated[Path, typer.Option(help="OHLCV bars (CSV, parquet, feather) or ticks with --bar")],
    param: Annotated[list[str], typer.Option("--param", help="strategy parameter k=v (repeatable)")] = [],  # noqa: B006
    cash: Annotated[str, typer.Option(help="starting cash")] = "10000",
    commission: Annotated[str, typer.Option(help="commission as a fraction of notional (0.002 = 0.2%)")] = "0",
    commission_per_order: Annotated[str, typer.Option(help="fixed fee per order")] = "0",
    min_fee: Annotated[str, typer.Option(help="minimum fee per order, account currency (0: none)")] = "0",
    slippage_bps: Annotated[str, typer.Option(help="slippage against the trader in basis points")] = "0",
    symbol: Annotated[str, typer.Option(help="symbol name used in reports")] = "",
    price_increment: Annotated[str | None, typer.Option(help="tick size (default: inferred from the data)")] = None,
    size_increment: Annotated[str | None,
                              typer.Option(help="lot step (default: 1, or 1e-6 with units=fractional)")] = None,
    bar: Annotated[str | None, typer.Option(help="resample a tick file to bars of this size (1min, 5min, 1h)")] = None,
    path: Annotated[str, typer.Option(help="auto | fast | event")] = "auto",
    risk: Annotated[Path | None, typer.Option(help="risk limits YAML (config/risk/...): "
                                                   "the live risk engine runs in the backtest")] = None,
    bot_id: Annotated[str, typer.Option(help="bot id whose limits apply from the risk file")] = "backtest",
    leverage: Annotated[str | None, typer.Option(help="trade on margin: margin = notional / leverage")] = None,
    margin: Annotated[str | None, typer.Option(help="trade on margin: margin = notional x this (0.05 = 5%)")] = None,
    instruments: Annotated[Path | None, typer.Option(help="instrument specs YAML (contract size, tick, margin, "
                                                          "commission per lot, swap) per symbol")] = None,
    stop_out_level: Annotated[str | None, typer.Option(help="margin level (equity / margin) that closes positions "
                                                            "(default 0.5)")] = None,
    account_currency: Annotated[str | None, typer.Option(help="account currency when not the quote currency "
                                                              "(USD for USDJPY)")] = None,
    fraction_sizing: Annotated[str | None, typer.Option(help="on margin, an equity fraction is: margin (fraction "
                                                             "x equity put up as margin, backtesting.py's rule; "
                                                             "the default) | notional (fraction x equity of "
                                                             "exposure, as MT5 and ccxt USD-M bots size live)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write stats, equity, trades and orders as JSON, "
                                                                 "stored by column (format version 2)")] = None,
    json_full: Annotated[bool, typer.Option("--json-full", help="with --json: one record per bar, trade and order "
                                                                "(format version 1; 10x larger)")] = False,
    trades_out: Annotated[Path | None, typer.Option("--trades", help="write the trades as CSV")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="write a plot: .png (a picture) or .html (the "
                                                                 "interactive report, works offline)")] = None,
    strategies_dir: StrategiesDirOption = None,
    conventions: Annotated[str, typer.Option(help="statistics table: tickbridge | backtesting.py (its definitions "
                                                  "and labels, to compare one to one)")] = "tickbridge",
    risk_free: Annotated[float, typer.Option(help="annual risk-free rate for Sharpe and Sortino (0.04 = 4 %)")] = 0.0,
    periods_per_year: Annotated[float | None, typer.Option(help="return periods per year for annualising "
                                                                "(default: inferred from the data's calendar)")] = None,
    load: Any = None,
) -> None:
    """Backtest a strategy on historical data and print its statistics."""
    from backtest.config import make_config
    from backtest.report import stats_table, write_json, write_trades_csv
    from backtest.runner import run_backtest

    from backtest.metrics import check_stats_options

    check_stats_options(conventions, risk_free, periods_per_year)  # before any work
    if json_full and json_out is None:
        raise ConfigError("json-full", "says which shape --json FILE writes; give --json FILE too")
    strategy_cls = resolve_cli_strategy(strategy, strategies_dir)
    params = parse_param_pairs(param)
    spec = None
    if instruments is not None:
        from backtest.config import load_instrument_specs
        specs = load_instrument_specs(instruments)
        spec = specs.get(symbol or data.stem)
        if spec is None:
            raise ConfigError("instruments", f"no spec for {symbol or data.stem} (use --symbol to name it)")
    config = make_config(cash=cash, commission=commission, commission_per_order=commission_per_order, min_fee=min_fee,
                         slippage_bps=slippage_bps, symbol=symbol or data.stem, price_increment=price_increment,
                         size_increment=size_increment, path=path, bot_id=bot_id, instrument=spec,
                         leverage=leverage, margin=margin, stop_out_level=stop_out_level,
                         account_currency=account_currency, fraction_sizing=fraction_sizing)
    risk_config = None
    if risk is not None:
        from engine.risk import load_risk_config
        risk_config = load_risk_config(risk)
    if plot_out is not None and plot_out.suffix.lower() not in (".png", ".html"):
        raise ConfigError("plot", f"{plot_out}: use a .png or .html file name")
    if plot_out is not None and plot_out.suffix.lower() == ".png":  # the .html report needs no matplotlib
        from app.extras import require
        require("plots", "plot")
    frame = load_frame(data, bar, load)
    started = time.perf_counter()
    result = _run_with_progress(frame, strategy_cls, params, config, run_backtest, risk_config)
    elapsed = time.perf_counter() - started
    from backtest.report import backtest_title, run_stats

    stats = run_stats(result, frame, strategy_cls, params, conventions, risk_free, periods_per_year)
    # warnings (an in-sample ml_signal run) come first and in the title: a reader stops at the table
    for warning in result.meta.get("warnings", []):
        err_console.print(f"[bold yellow]warning:[/bold yellow] {warning}", highlight=False)
    title = backtest_title(result, f"{strategy_cls.name} on {data.name} ({len(frame):,} bars, "
                                   f"{result.meta.get('path')} path, {elapsed:.2f} s)")
    console.print(stats_table(stats, title, result))
    if result.denied:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(result.meta.get("reasons", {}).items()))
        console.print(f"[yellow]{len(result.denied)} orders denied by risk[/yellow]: {reasons}")
    for change in result.meta.get("risk_state_changes", []):
        console.print(f"risk state {change['scope']}: {change['from']} -> {change['to']} ({change['reason']})")
    if json_out is not None:
        write_json(json_out, result, stats, full=json_full)
        console.print(f"wrote {json_out}")
    if trades_out is not None:
        write_trades_csv(trades_out, result)
        console.print(f"wrote {trades_out}")
    if plot_out is not None and plot_out.suffix.lower() == ".html":
        from backtest.report_html import write_report
        write_report(plot_out, result, stats)
        console.print(f"wrote {plot_out}")
    elif plot_out is not None:
        from backtest.plot import plot_result
        plot_result(plot_out, result)
        console.print(f"wrote {plot_out}")


def _run_with_progress(frame: Any, strategy_cls: Any, params: dict[str, Any], config: Any, runner: Any,
                       risk: Any) -> Any:
    """Show a progress bar when a run is long enough to wonder about (event path, many bars)."""
    if len(frame) < 200_000 or not sys.stderr.isatty():
        return runner(frame, strategy_cls, params, config, risk)
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("backtest", total=len(frame))
        return runner(frame, strategy_cls, params, config, risk,
                      progress=lambda done, total: progress.update(task, completed=done))


@app.command("strategies")
def list_strategies(strategies_dir: StrategiesDirOption = None) -> None:
    """List the strategies you can name: built-ins, your strategies directory, installed packages'."""
    from strategies.registry import available, set_strategies_dir

    if strategies_dir is not None:
        set_strategies_dir(strategies_dir)
    for entry in available():
        fields = "" if entry.cls is None else ", ".join(
            f"{k}={v.default}" for k, v in entry.cls.Params.model_fields.items())
        note = f" [yellow]({entry.note})[/yellow]" if entry.note else ""
        console.print(f"[bold]{entry.name}[/bold] [dim]{entry.origin}[/dim]: {fields}{note}", highlight=False)


db_app = typer.Typer(help="The SQL store.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    url: Annotated[str | None, typer.Option(help="database URL (default: TICKBRIDGE_DATABASE_URL or "
                                                 "sqlite:///var/tickbridge.db)")] = None,
) -> None:
    """Create or migrate the database schema to the newest version."""
    from engine.store.db import database_url, masked, upgrade

    upgrade(url)
    console.print(f"database at {masked(database_url(url))} is at the newest schema")


@app.command("train")
@load_options
def train_model(
    model: Annotated[str, typer.Option(help="gbm | logreg | mlp | gru (mlp and gru need the torch extra)")],
    data: Annotated[Path, typer.Option(help="OHLCV bars (CSV, parquet, feather)")],
    horizon: Annotated[int, typer.Option(help="label horizon in bars")] = 4,
    threshold: Annotated[float, typer.Option(help="return beyond which a label is up/down")] = 0.0005,
    folds: Annotated[int, typer.Option(help="walk-forward test windows")] = 5,
    min_train: Annotated[int, typer.Option(help="bars in the first training window")] = 1000,
    embargo: Annotated[int, typer.Option(help="extra bars between training and test, after the purge")] = 10,
    window: Annotated[str, typer.Option(help="expanding | rolling")] = "expanding",
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    param: Annotated[list[str], typer.Option("--param", help="model parameter k=v, e.g. epochs=20 (repeatable)")] = [],  # noqa: B006
    enter: Annotated[float, typer.Option(help="signal backtest: P(up)/P(down) that opens a position")] = 0.55,
    exit_below: Annotated[float, typer.Option("--exit", help="signal backtest: flatten below this")] = 0.45,
    long_short: Annotated[bool, typer.Option(help="signal backtest: short on P(down) too")] = False,
    commission: Annotated[str, typer.Option(help="signal backtest: commission as a fraction of notional")] = "0",
    name: Annotated[str, typer.Option(help="registry name (default: data file stem + model)")] = "",
    url: Annotated[str | None, typer.Option(help="database URL for the registry")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="OpenMP/BLAS threads for gbm/logreg "
                                                            "(default: the CPUs this process may use)")] = None,
    load: Any = None,
) -> None:
    """Train a model walk-forward, print out-of-sample metrics and the signal's backtest, register it."""
    from backtest.config import make_config
    from backtest.data import load_bars
    from backtest.report import stats_table
    from engine.store.db import check_connection, make_engine, upgrade
    from models.estimators import MODEL_KINDS, make_model
    from models.oos_backtest import signal_backtest
    from models.registry import ModelRegistry
    from models.signals import SignalRule
    from models.training import TrainConfig, train

    if model not in MODEL_KINDS:
        raise ConfigError("model", f"unknown model {model!r}; known: {', '.join(MODEL_KINDS)}")
    if window not in ("expanding", "rolling"):
        raise ConfigError("window", f"must be expanding or rolling, got {window!r}")
    if not 0.5 < enter < 1 or not 0 < exit_below < enter:
        raise ConfigError("enter", f"need 0 < exit ({exit_below}) < enter ({enter}) < 1 and enter > 0.5")
    model_params = parse_param_pairs(param)
    try:
        make_model(model, seed, **model_params)  # refuses an unknown parameter before any work
    except (TypeError, ValueError) as exc:
        raise ConfigError("param", str(exc)) from None
    config = TrainConfig(kind=model, horizon=horizon, threshold=threshold, folds=folds,  # type: ignore[arg-type]
                         min_train=min_train, embargo=embargo, window=window, seed=seed,  # type: ignore[arg-type]
                         model_params=model_params, threads=threads)
    engine = make_engine(url)
    check_connection(engine)  # a broken registry is found before an hour of training, not after
    notes: list[str] = []
    try:
        bars = load_bars(data, load, notes)
    finally:
        print_notes(notes)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} folds"),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task(f"walk-forward {model}", total=folds)
        result = train(bars, config, progress=lambda done, total: progress.update(task, completed=done))
    rule = SignalRule(enter=enter, exit=exit_below, allow_short=long_short)
    _, stats = signal_backtest(bars, result.oos_proba, rule,
                               make_config(path="fast", commission=commission, symbol=data.stem))
    result.metrics["signal_backtest"] = {k: stats[k] for k in ("return_pct", "sharpe", "max_drawdown_pct",
                                                                "trades", "win_rate_pct") if k in stats}
    upgrade(url)
    record = ModelRegistry(engine).register(name or f"{data.stem}_{model}", result.model, config.spec,
                                            result.train_window, result.metrics)
    m = result.metrics
    console.print(f"out of sample ({m['oos_rows']:,} bars, {folds} folds): accuracy {m['accuracy']:.3f}, "
                  f"log loss {m['log_loss']:.3f}, AUC {m.get('auc', float('nan')):.3f}")
    calibration = m.get("calibration_up", [])
    if calibration:
        console.print("calibration of P(up): " + ", ".join(
            f"{c['bin']}: {c['realised']:.2f} ({c['rows']})" for c in calibration))
    console.print(stats_table(stats, f"out-of-sample signal backtest (enter {enter}, exit {exit_below}, "
                                     f"{'long/short' if long_short else 'long only'})"))
    console.print(f"registered {record.name} v{record.version} as model id {record.id} (sha256 {record.sha256[:12]})")


models_app = typer.Typer(help="The model registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")
UrlOption = Annotated[str | None, typer.Option(help="database URL (default: TICKBRIDGE_DATABASE_URL or sqlite:///var/tickbridge.db)")]


@models_app.command("list")
def models_list(url: UrlOption = None) -> None:
    """Registered models, one line per version."""
    from rich.table import Table

    from engine.store.db import check_connection, make_engine
    from models.registry import ModelRegistry

    engine = make_engine(url)
    check_connection(engine)
    table = Table("id", "name", "version", "kind", "status", "trained on", "sha256")
    for r in ModelRegistry(engine).list():
        window = f"{_day(r.train_start)} .. {_day(r.train_end)}"
        table.add_row(str(r.id), r.name, str(r.version), r.kind, r.status, window, r.sha256[:12])
    console.print(table)


@models_app.command("show")
def models_show(model_id: Annotated[int, typer.Argument(help="model id")], url: UrlOption = None) -> None:
    """One model version in full: spec, parameters, window, metrics, hash."""
    import json

    from engine.store.db import check_connection, make_engine
    from models.registry import ModelRegistry

    engine = make_engine(url)
    check_connection(engine)
    r = ModelRegistry(engine).get(model_id)
    console.print_json(json.dumps({
        "id": r.id, "name": r.name, "version": r.version, "kind": r.kind, "status": r.status,
        "train_window": [_day(r.train_start), _day(r.train_end)], "feature_spec": r.feature_spec,
        "params": r.params, "metrics": r.metrics, "sha256": r.sha256, "artifact": r.artifact}))


@models_app.command("promote")
def models_promote(model_id: Annotated[int, typer.Argument(help="model id")],
                   reason: Annotated[str, typer.Option(help="why, for the audit log")] = "promoted by hand",
                   url: UrlOption = None) -> None:
    """Make a model version the active one of its name (audited); ml_signal bots that name the
    model trade it from their next start."""
    from engine.store.db import check_connection, make_engine
    from models.registry import ModelRegistry

    engine = make_engine(url)
    check_connection(engine)
    r = ModelRegistry(engine).promote(model_id, actor="cli", reason=reason)
    console.print(f"{r.name} v{r.version} (model id {r.id}) is now active")


@app.command("retrain")
def retrain(
    name: Annotated[str, typer.Option(help="registry name of the model to retrain")],
    model: Annotated[str, typer.Option(help="gbm | logreg | mlp | gru")],
    data: Annotated[Path, typer.Option(help="OHLCV bars, reloaded at every run")],
    every: Annotated[float, typer.Option(help="hours between runs")] = 24.0,
    metric: Annotated[str, typer.Option(help="auc | accuracy | log_loss: promotion needs a better one")] = "auc",
    horizon: Annotated[int, typer.Option(help="label horizon in bars")] = 4,
    folds: Annotated[int, typer.Option(help="walk-forward test windows")] = 5,
    min_train: Annotated[int, typer.Option(help="bars in the first training window")] = 1000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    once: Annotated[bool, typer.Option(help="run once and exit instead of scheduling")] = False,
    url: UrlOption = None,
    threads: Annotated[int | None, typer.Option(min=1, help="OpenMP/BLAS threads for gbm/logreg "
                                                            "(default: the CPUs this process may use)")] = None,
) -> None:
    """Retrain on a schedule (APScheduler); promote a version only if it beats the active one."""
    import signal as signals
    import threading

    from engine.store.db import check_connection, make_engine, upgrade
    from models.estimators import MODEL_KINDS
    from models.registry import ModelRegistry
    from models.retrain import RetrainJob, csv_loader, start_scheduler
    from models.training import TrainConfig

    if model not in MODEL_KINDS:
        raise ConfigError("model", f"unknown model {model!r}; known: {', '.join(MODEL_KINDS)}")
    if not data.is_file():
        raise ConfigError("data", f"{data} does not exist")
    engine = make_engine(url)
    check_connection(engine)
    upgrade(url)
    job = RetrainJob(name, csv_loader(data), TrainConfig(kind=model, horizon=horizon, folds=folds,  # type: ignore[arg-type]
                     min_train=min_train, seed=seed, threads=threads), ModelRegistry(engine), metric=metric)  # type: ignore[arg-type]
    if once:
        outcome = job.run_once()
        console.print(_retrain_line(outcome))
        return
    scheduler = start_scheduler(job, every_seconds=every * 3600)
    stop = threading.Event()
    for sig in (signals.SIGINT, signals.SIGTERM):
        signals.signal(sig, lambda *_: stop.set())
    console.print(f"retraining {name} every {every:g} h; Ctrl-C stops")
    seen = 0
    while not stop.wait(1.0):
        for outcome in job.outcomes[seen:]:
            console.print(_retrain_line(outcome))
        seen = len(job.outcomes)
    scheduler.shutdown(wait=True)


def _retrain_line(outcome: Any) -> str:
    c = outcome.candidate
    before = (("no active model" if outcome.promoted else outcome.reason) if outcome.active_score is None
              else f"{outcome.active_score:.4f} (active, re-scored on the same {outcome.compared_rows:,} rows)")
    verdict = "promoted" if outcome.promoted else "rejected (the active model keeps trading)"
    return f"{c.name} v{c.version}: score {outcome.candidate_score:.4f} vs {before}: {verdict}"


from app.research_cli import register as _register_research  # noqa: E402  (sweep, wfo, montecarlo)

_register_research(app)

from app.api_cli import register as _register_api  # noqa: E402  (serve, demo, users)

_register_api(app)
from app.bots_cli import register as _register_runtime  # noqa: E402  (run, parity, bots)

_register_runtime(app)


def _day(ns: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def main() -> None:
    """Entry point: run the app; our own errors, usage errors and mistakes in a user's strategy
    each become one clear line and exit status 2, never a traceback.

    click's own standalone mode would print usage errors too, but it also exits on success,
    which callers that run `main()` in-process (tests, scripts) do not expect; so the app runs
    with standalone_mode=False and the errors are shown here."""
    try:
        from engine.settings import load_settings

        load_settings()  # every TICKBRIDGE_* variable checked before any command: a bad one, exit 2
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n here
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except TickbridgeError as exc:
        cause = getattr(exc, "cause", None)  # Ray re-raises a worker's error as a subclass of it
        _error_line(str(cause if isinstance(cause, TickbridgeError) else exc))
        sys.exit(EXIT_USER_ERROR)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        sys.exit(130)
    except ModuleNotFoundError as exc:
        from app.extras import missing_extra

        advice = missing_extra(exc)
        if advice is None:
            raise
        _error_line(advice)
        sys.exit(EXIT_USER_ERROR)
    except Exception as exc:
        if isinstance(exc, _click_exceptions()):  # usage: "No such option: --x", with the closest match
            exc.show()
            sys.exit(exc.exit_code)
        if "strategies.registry" in sys.modules:  # a user's strategy may have run: point at their line
            from strategies.registry import user_location, user_location_in_text

            cause = getattr(exc, "cause", None)  # a Ray worker's error: its traceback comes as text
            if isinstance(cause, BaseException) and type(exc).__module__.startswith("ray."):
                where, exc = user_location_in_text(str(exc)), cause
            else:
                where = user_location(exc.__traceback__)
            if where is not None:
                text = str(exc)
                _error_line(f"strategy: {where}: {type(exc).__name__}{': ' + text if text else ''}")
                sys.exit(EXIT_USER_ERROR)
        raise


def _error_line(message: str) -> None:
    """One line on stderr, unwrapped, with the user's text shown as written (`close[i + 1]` is not
    rich markup)."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)


def _click_exceptions() -> tuple[type[Exception], ...]:
    """click's usage exceptions: typer 0.29 vendors click as typer._click (pinned in
    pyproject.toml); a standalone click, if a plugin uses it, raises its own."""
    kinds: list[type[Exception]] = []
    try:
        from typer._click.exceptions import ClickException
        kinds.append(ClickException)
    except ImportError:  # a typer that uses the click package itself
        pass
    try:
        import click
        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kinds)


if __name__ == "__main__":
    main()
