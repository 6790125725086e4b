"""The research commands: `tickbridge sweep`, `tickbridge wfo`, `tickbridge montecarlo`.

    tickbridge sweep --strategy sma_cross --data data/crypto/BTC-PERP_1m.csv \
        --grid fast=5:50:5 --grid slow=20:200:10 --param units=fractional [--objective sharpe] \
        [--workers N | --ray-address HOST:PORT] [--search optuna --trials 200]
    tickbridge wfo --strategy sma_cross --data ... --grid ... --folds 5 [--train-bars N --test-bars M]
    tickbridge montecarlo out/run.json --paths 10000 --loss-pct 20 [--seed 0] [--plot mc.png]

Every input is checked before Ray starts or a bar is loaded where possible (the grid, the
objective, the strategy and its parameters, file names, the store, the Ray address), so a typo
costs a second, not a sweep. Errors are ConfigError/DataError: `tickbridge` prints one line and
exits with status 2. `register(app)` adds the commands to the main typer app.
"""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.errors import ConfigError

MAX_GRID = 1_000_000
console = Console()
err_console = Console(stderr=True)

StrategyOption = Annotated[str, typer.Option(help="a strategy with vectorised signals(): a name (sma_cross, one in "
                                                   "--strategies-dir or an installed package's), or your own class: "
                                                   "path/to/file.py:Class or package.module:Class")]
StrategiesDirOption = Annotated[Path | None, typer.Option(help="a directory of your strategies (default: "
                                                               "TICKBRIDGE_STRATEGIES_DIR)")]
GridOption = Annotated[list[str], typer.Option("--grid", help="name=start:stop:step (stop included), "
                                                              "name=a,b or name=v; repeatable")]
ParamOption = Annotated[list[str], typer.Option("--param", help="fixed strategy parameter k=v (repeatable)")]
UrlOption = Annotated[str | None, typer.Option(help="database URL for the run record (default: TICKBRIDGE_DATABASE_URL "
                                                    "or sqlite:///var/tickbridge.db)")]

# How to read the data file: one definition for every command that loads bars (backtest, sweep,
# wfo, train), which receives them as one backtest.data.LoadOptions named `load`.
_LOAD_OPTIONS = {
    "load_format": (Annotated[str, typer.Option("--format", help="data layout: auto (sniffed) | csv | mt5 | "
                                                                  "ninjatrader | lean | freqtrade")], "auto"),
    "load_columns": (Annotated[str | None, typer.Option("--columns", help="field names of a file without a header, in "
                                                                         "order: date,open,high,low,close,volume "
                                                                         "(date,time,... for split date and time)")],
                     None),
    "load_sep": (Annotated[str | None, typer.Option("--sep", help="field separator (default: sniffed; tab for a tab)")],
                 None),
    "load_decimal": (Annotated[str, typer.Option("--decimal", help="decimal mark: . or , (with --sep ; or tab)")], "."),
    "load_adjusted": (Annotated[bool, typer.Option("--adjusted", help="scale open, high, low, close by Adj Close / "
                                                                      "Close (default: as traded, with a note)")],
                      False),
}


def load_options(command: Any) -> Any:
    """Give a typer command the data-loading options; it receives them as `load` (a LoadOptions,
    checked before the command's body runs, so a bad --sep costs no work)."""
    signature = inspect.signature(command, eval_str=True)
    kept = [p for p in signature.parameters.values() if p.name != "load"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, (annotation, default) in _LOAD_OPTIONS.items()]

    @functools.wraps(command)
    def with_load(*args: Any, **kwargs: Any) -> Any:
        from backtest.data import LoadOptions

        text = {name[len("load_"):]: kwargs.pop(name, default) for name, (_, default) in _LOAD_OPTIONS.items()}
        return command(*args, load=LoadOptions.from_text(**text), **kwargs)

    with_load.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    with_load.__annotations__ = {p.name: p.annotation for p in kept + added}
    return with_load


@dataclass(slots=True)
class Plan:
    """Everything a research run needs, validated; built before any expensive step."""

    strategy_cls: Any
    grid: dict[str, list[Any]]
    fixed: dict[str, Any]
    combos: list[dict[str, Any]]
    skipped: int
    objective: str
    workers: int | None  # None: every local CPU, or every CPU of the cluster
    address: str | None
    engine: Any | None  # the store, None with --no-store


def plan_run(strategy: str, grid: list[str], param: list[str], objective: str, workers: int | None,
             ray_address: str | None, url: str | None, store: bool, figures: list[tuple[Path | None, str]],
             expand: bool = True) -> Plan:
    """Check every input, cheapest first; raise ConfigError (or StoreUnavailable) on the first bad one.
    `expand=False` (a search) checks the parameter names but does not list every combination."""
    from backtest.evaluate import validate_objective
    from backtest.heatmap import check_figure_path
    from backtest.ray_pool import check_ray_address
    from backtest.sweep import check_names, expand_grid, parse_grid
    from app.cli import parse_param_pairs
    from strategies.base import Strategy
    from strategies.registry import resolve_strategy

    strategy_cls = resolve_strategy(strategy, allow_code_refs=True)  # the command line is the operator's
    if strategy_cls.signals is Strategy.signals:
        raise ConfigError("strategy", f"{strategy_cls.name} has no vectorised signals(); sweeps run the fast path only")
    objective = validate_objective(objective)
    parsed_grid = parse_grid(grid, limit=None if not expand else MAX_GRID)
    fixed = parse_param_pairs(param)
    if expand:
        combos, skipped, _ = expand_grid(strategy_cls, parsed_grid, fixed)
    else:
        check_names(strategy_cls, parsed_grid, fixed)
        combos, skipped = [], 0
    if workers is not None and workers < 1:
        raise ConfigError("workers", f"must be at least 1, got {workers}")
    for path, option in figures:
        if path is not None:
            check_figure_path(path, option)
    engine = None
    if store:
        from engine.store.db import check_connection, make_engine
        engine = make_engine(url)
        check_connection(engine)
    check_ray_address(ray_address)
    return Plan(strategy_cls, parsed_grid, fixed, combos, skipped, objective, workers, ray_address, engine)


def _use_strategies_dir(path: Path | None) -> None:
    if path is not None:
        from strategies.registry import set_strategies_dir
        set_strategies_dir(path)


def _ship_by_value(strategy_cls: Any) -> None:
    """Ray workers import a pickled class by its module's name. A strategy of the user's (a file,
    the strategies directory, a module on this process's path) has a module the workers may not
    find, so its module travels by value instead (the built-ins are shipped with the code)."""
    module = sys.modules.get(strategy_cls.__module__)
    if module is None or strategy_cls.__module__.partition(".")[0] in ("strategies", "models", "backtest"):
        return
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)


def _config(frame: Any, cash: str, commission: str, slippage_bps: str, symbol: str) -> Any:
    """The backtest config with the tick size fixed once from the whole file, so every window and
    every worker books on the same grid a direct `tickbridge backtest` of the file would use."""
    from backtest.config import make_config
    from backtest.runner import build_instrument

    config = make_config(cash=cash, commission=commission, slippage_bps=slippage_bps, symbol=symbol, path="fast")
    return config.model_copy(update={"price_increment": build_instrument(frame, config, "whole").price_increment})


def _progress(total: int, label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err_console, transient=True, disable=not sys.stderr.isatty())


def _run_id(strategy: str, data: Path, kind: str) -> str:
    return f"{kind}_{strategy}_{data.stem}_{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"


def _top_table(rows: list[dict[str, Any]], names: list[str], objective: str, title: str) -> Table:
    from backtest.report import _text

    table = Table(title=title, header_style="bold")
    extra = [k for k in ("sharpe", "return_pct", "max_drawdown_pct", "trades") if k != objective]
    unsized = any(row.get("unsized_orders") for row in rows)  # a column only when it says something
    for column in ["#", *names, objective, *extra, *(["not sized"] if unsized else [])]:
        table.add_column(column, justify="right")
    for i, row in enumerate(rows, 1):
        table.add_row(str(i), *(str(row["params"].get(n)) for n in names),
                      *(_text(row["stats"].get(k)) for k in [objective, *extra]),
                      *([_text(row.get("unsized_orders", 0))] if unsized else []))
    return table


def _honesty_lines(overfitting: dict[str, Any]) -> list[str]:
    dsr = overfitting.get("dsr", {})
    pbo = overfitting.get("pbo", {})
    lines = []
    if dsr:
        value = dsr.get("deflated_sharpe_ratio")
        lines.append(
            f"deflated Sharpe ratio: {'—' if value is None else f'{value:.3f}'} (best Sharpe "
            f"{_fmt(dsr.get('sharpe_annualised'))} annualised; {dsr['trials']:,} trials would reach "
            f"{_fmt(dsr.get('expected_max_sharpe_annualised'))} by luck alone; {dsr['observations']} periods)")
    if pbo:
        value = pbo.get("pbo")
        lines.append("probability of backtest overfitting (CSCV): "
                     + (f"{value:.3f} ({pbo['splits']:,} splits of {pbo['blocks']} blocks)" if value is not None
                        else pbo.get("note", "—")))
    return lines


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


@load_options
def sweep(
    strategy: StrategyOption,
    data: Annotated[Path, typer.Option(help="OHLCV bars (CSV, parquet, feather) or ticks with --bar")],
    grid: GridOption = [],  # noqa: B006
    param: ParamOption = [],  # noqa: B006
    objective: Annotated[str, typer.Option(help="stat to maximise (any numeric stat of the report; "
                                                "volatility and fees are minimised)")] = "sharpe",
    search: Annotated[str, typer.Option(help="grid (every combination) | "
                                             "optuna (TPE over the grid's ranges)")] = "grid",
    trials: Annotated[int, typer.Option(help="optuna trials (with --search optuna)")] = 100,
    seed: Annotated[int, typer.Option(help="optuna sampler seed")] = 0,
    workers: Annotated[int | None, typer.Option(help="local Ray workers (default: every CPU)")] = None,
    ray_address: Annotated[str | None, typer.Option(help="join a Ray cluster: host:port, "
                                                         "ray://host:port or auto")] = None,
    cash: Annotated[str, typer.Option(help="starting cash")] = "10000",
    commission: Annotated[str, typer.Option(help="commission as a fraction of notional")] = "0",
    slippage_bps: Annotated[str, typer.Option(help="slippage against the trader in basis points")] = "0",
    bar: Annotated[str | None, typer.Option(help="resample a tick file to bars of this size")] = None,
    top: Annotated[int, typer.Option(help="rows in the printed table")] = 10,
    out: Annotated[Path, typer.Option(help="directory for the JSON and the heatmap")] = Path("out/sweeps"),
    json_out: Annotated[Path | None, typer.Option("--json", help="JSON path (default: OUT/<run id>.json)")] = None,
    heatmap: Annotated[Path | None, typer.Option(help=".png or .html (default: OUT/<run id>.png)")] = None,
    url: UrlOption = None,
    store: Annotated[bool, typer.Option(help="record the run in the SQL store")] = True,
    strategies_dir: StrategiesDirOption = None,
    load: Any = None,
) -> None:
    """Sweep a strategy's parameters on Ray; print the best, write JSON and a heatmap, store the run."""
    import json

    from backtest.heatmap import write_heatmap
    from backtest.ray_pool import WorkerPool, default_workers, pool_size, ray_session
    from backtest.sweep import outcome_json, run_grid
    from app.cli import load_frame

    if search not in ("grid", "optuna"):
        raise ConfigError("search", f"must be grid or optuna, got {search!r}")
    if search == "optuna" and trials < 1:
        raise ConfigError("trials", f"must be at least 1, got {trials}")
    _use_strategies_dir(strategies_dir)
    plan = plan_run(strategy, grid, param, objective, workers, ray_address, url, store, [(heatmap, "heatmap")],
                    expand=search == "grid")
    space = None
    if search == "optuna":
        from backtest.search import search_space
        space = search_space(plan.grid)
    frame = load_frame(data, bar, load)
    config = _config(frame, cash, commission, slippage_bps, data.stem)
    run_id = _run_id(plan.strategy_cls.name, data, search)
    json_path = json_out or out / f"{run_id}.json"
    heatmap_path = heatmap or out / f"{run_id}.png"
    total = trials if search == "optuna" else len(plan.combos)
    _ship_by_value(plan.strategy_cls)
    with ray_session(plan.address, plan.workers or default_workers()):
        pool = WorkerPool(frame, plan.strategy_cls, config, plan.objective, pool_size(plan.workers))
        try:
            with _progress(total, f"{search} {plan.strategy_cls.name}") as progress:
                task = progress.add_task("sweep", total=total)

                def advance(n: int) -> None:
                    progress.advance(task, n)

                if space is not None:
                    from backtest.search import run_optuna
                    outcome = run_optuna(frame, plan.strategy_cls, space, plan.fixed, plan.objective, pool,
                                         trials, seed, advance)
                else:
                    outcome = run_grid(frame, plan.strategy_cls, plan.combos, plan.fixed, plan.grid, config,
                                       plan.objective, pool, advance)
        finally:
            pool.close()
    if space is None:
        outcome.skipped = plan.skipped
    document = outcome_json(outcome, {"data": str(data), "bars": len(frame), "search": search, "run_id": run_id,
                                      "config": config.model_dump(mode="json")})
    names = list(plan.grid)
    console.print(_top_table(document["results"][:top], names, plan.objective,
                             f"{plan.strategy_cls.name} on {data.name}: best {min(top, len(outcome.evaluations))} of "
                             f"{len(outcome.evaluations):,} by {plan.objective} ({outcome.elapsed_s:.1f} s, "
                             f"{pool.workers} workers)"))
    if outcome.skipped:
        console.print(f"{outcome.skipped:,} combinations skipped: the strategy refuses them")
    if document.get("note"):
        console.print(f"[yellow]{document['note']}[/yellow]", highlight=False)
    for line in _honesty_lines(outcome.overfitting):
        console.print(line)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, allow_nan=False, default=str))
    console.print(f"wrote {json_path}")
    write_heatmap(heatmap_path, document["results"], names, plan.objective,
                  f"{plan.strategy_cls.name} {plan.objective} on {data.name}")
    console.print(f"wrote {heatmap_path}")
    if plan.engine is not None:
        run_db_id = _store(plan, url, search, data, outcome, document, json_path)
        console.print(f"stored as sweep run {run_db_id}")


def _store(plan: Plan, url: str | None, kind: str, data: Path, outcome: Any, document: dict[str, Any],
           json_path: Path) -> int:
    from backtest.sweep_store import save_run
    from engine.store.db import upgrade

    upgrade(url)
    return save_run(plan.engine, kind=kind, strategy=plan.strategy_cls.name, data=str(data), objective=plan.objective,
                    space={"grid": plan.grid, "fixed": plan.fixed}, trials=len(outcome.evaluations),
                    best_params=document["best"]["params"], best_value=document["best"]["stats"].get(plan.objective),
                    best_stats=document["best"]["stats"], overfitting=outcome.overfitting,
                    result_path=str(json_path), elapsed_s=outcome.elapsed_s)


def montecarlo(
    result: Annotated[Path, typer.Argument(help="a backtest JSON written by `tickbridge backtest --json`")],
    paths: Annotated[int, typer.Option(help="simulated equity paths")] = 10_000,
    loss_pct: Annotated[float, typer.Option(help="the loss whose probability is reported, in percent")] = 10.0,
    method: Annotated[str, typer.Option(help="bootstrap (draw trades with replacement) | "
                                             "shuffle (reorder them)")] = "bootstrap",
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same figures")] = 0,
    plot: Annotated[Path | None, typer.Option(help="histograms of final equity and drawdown (.png or .html)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the summary as JSON")] = None,
) -> None:
    """Resample a backtest's trades: distribution of final equity and max drawdown, P(loss)."""
    import json

    from backtest.heatmap import check_figure_path
    from backtest.montecarlo import load_trades, simulate, plot_distribution

    if plot is not None:
        check_figure_path(plot, "plot")
    sample = load_trades(result)
    outcome = simulate(sample, paths, seed, method, loss_pct)  # type: ignore[arg-type]
    summary = outcome.summary()
    table = Table(title=f"Monte Carlo of {len(sample.returns)} trades from {result.name}: {paths:,} paths "
                        f"({method}, seed {seed})", header_style="bold")
    for column in ("", "p5", "p25", "median", "p75", "p95", "mean"):
        table.add_column(column, justify="right", no_wrap=True)
    for label, key in (("final equity", "final_equity"), ("max drawdown %", "max_drawdown_pct")):
        d = summary[key]
        table.add_row(label, *(f"{d[k]:,.2f}" for k in ("p5", "p25", "p50", "p75", "p95", "mean")))
    console.print(table)
    console.print(f"P(final equity <= -{loss_pct:g}% of {sample.initial_cash:,.2f}) = {outcome.prob_loss:.4f}")
    console.print(f"P(max drawdown >= {loss_pct:g}% at some point) = {outcome.prob_drawdown:.4f}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary))
        console.print(f"wrote {json_out}")
    if plot is not None:
        plot_distribution(plot, outcome, f"Monte Carlo: {result.name}, {paths:,} paths ({method})")
        console.print(f"wrote {plot}")


@load_options
def wfo(
    strategy: StrategyOption,
    data: Annotated[Path, typer.Option(help="OHLCV bars (CSV, parquet, feather) or ticks with --bar")],
    grid: GridOption = [],  # noqa: B006
    param: ParamOption = [],  # noqa: B006
    objective: Annotated[str, typer.Option(help="stat the in-sample sweep maximises")] = "sharpe",
    folds: Annotated[int, typer.Option(help="out-of-sample windows")] = 5,
    train_bars: Annotated[int | None, typer.Option(help="in-sample bars (default: 4 x test bars)")] = None,
    test_bars: Annotated[int | None, typer.Option(help="out-of-sample bars (default: the folds fill the file)")] = None,
    anchored: Annotated[bool, typer.Option(help="in-sample window grows from the first bar "
                                                "instead of rolling")] = False,
    workers: Annotated[int | None, typer.Option(help="local Ray workers (default: every CPU)")] = None,
    ray_address: Annotated[str | None, typer.Option(help="join a Ray cluster: host:port, "
                                                         "ray://host:port or auto")] = None,
    cash: Annotated[str, typer.Option(help="starting cash")] = "10000",
    commission: Annotated[str, typer.Option(help="commission as a fraction of notional")] = "0",
    slippage_bps: Annotated[str, typer.Option(help="slippage against the trader in basis points")] = "0",
    bar: Annotated[str | None, typer.Option(help="resample a tick file to bars of this size")] = None,
    out: Annotated[Path, typer.Option(help="directory for the JSON and the plot")] = Path("out/sweeps"),
    json_out: Annotated[Path | None, typer.Option("--json", help="JSON path (default: OUT/<run id>.json)")] = None,
    plot: Annotated[Path | None, typer.Option(help="stitched out-of-sample equity "
                                                   "(.png or .html; default OUT/<run id>.png)")] = None,
    url: UrlOption = None,
    store: Annotated[bool, typer.Option(help="record the run in the SQL store")] = True,
    strategies_dir: StrategiesDirOption = None,
    load: Any = None,
) -> None:
    """Walk-forward optimisation: sweep in-sample, trade the winner out of sample, roll; stitched OOS vs IS."""
    import json

    from backtest.ray_pool import WorkerPool, default_workers, pool_size, ray_session
    from backtest.wfo import make_folds, run_walk_forward, walk_forward_json
    from app.cli import load_frame

    _use_strategies_dir(strategies_dir)
    plan = plan_run(strategy, grid, param, objective, workers, ray_address, url, store, [(plot, "plot")])
    frame = load_frame(data, bar, load)
    fold_list = make_folds(len(frame), folds, train_bars, test_bars, anchored)
    config = _config(frame, cash, commission, slippage_bps, data.stem)
    run_id = _run_id(plan.strategy_cls.name, data, "wfo")
    json_path = json_out or out / f"{run_id}.json"
    plot_path = plot or out / f"{run_id}.png"
    _ship_by_value(plan.strategy_cls)
    with ray_session(plan.address, plan.workers or default_workers()):
        pool = WorkerPool(frame, plan.strategy_cls, config, plan.objective, pool_size(plan.workers))
        try:
            with _progress(len(plan.combos) * len(fold_list), f"walk-forward {plan.strategy_cls.name}") as progress:
                task = progress.add_task("wfo", total=len(plan.combos) * len(fold_list))
                result = run_walk_forward(frame, plan.strategy_cls, plan.combos, plan.fixed, plan.grid, config,
                                          plan.objective, pool, fold_list, lambda n: progress.advance(task, n))
        finally:
            pool.close()
    document = walk_forward_json(result, plan.objective)
    document.update(strategy=plan.strategy_cls.name, data=str(data), grid=plan.grid, fixed=plan.fixed,
                    anchored=anchored, run_id=run_id)
    console.print(_folds_table(document, list(plan.grid), plan.objective))
    console.print(_is_vs_oos_table(document, plan.objective))
    if document.get("note"):
        console.print(f"[yellow]out of sample: {document['note']}[/yellow]", highlight=False)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, allow_nan=False, default=str))
    console.print(f"wrote {json_path}")
    from backtest.plot import plot_result
    result.stitched.meta.update(strategy=f"{plan.strategy_cls.name} walk-forward (out of sample)", symbol=data.stem)
    plot_result(plot_path, result.stitched)
    console.print(f"wrote {plot_path}")
    if plan.engine is not None:
        from backtest.sweep_store import save_run
        from engine.store.db import upgrade

        upgrade(url)
        run_db_id = save_run(
            plan.engine, kind="wfo", strategy=plan.strategy_cls.name, data=str(data), objective=plan.objective,
            space={"grid": plan.grid, "fixed": plan.fixed, "folds": folds, "anchored": anchored},
            trials=len(plan.combos) * len(fold_list), best_params=document["folds"][-1]["params"],
            best_value=document["out_of_sample"].get(plan.objective), best_stats=document["out_of_sample"],
            overfitting={"in_sample_mean": document["in_sample_mean"],
                         "walk_forward_efficiency": document["walk_forward_efficiency"]},
            result_path=str(json_path), elapsed_s=sum(r.in_sample.elapsed_s for r in result.folds))
        console.print(f"stored as sweep run {run_db_id}")


def _folds_table(document: dict[str, Any], names: list[str], objective: str) -> Table:
    from backtest.report import _text

    table = Table(title=f"walk-forward folds: best in-sample parameters by {objective}", header_style="bold")
    for column in ("fold", "out-of-sample window", *names, f"IS {objective}", f"OOS {objective}", "OOS return %",
                   "IS DSR"):
        table.add_column(column, justify="right")
    for f in document["folds"]:
        dsr = f["in_sample_overfitting"].get("dsr", {}).get("deflated_sharpe_ratio")
        table.add_row(str(f["fold"]), f"{str(f['out_of_sample'][0])[:10]}..{str(f['out_of_sample'][1])[:10]}",
                      *(str(f["params"].get(n)) for n in names), _text(f["in_sample_stats"].get(objective)),
                      _text(f["out_of_sample_stats"].get(objective)), _text(f["out_of_sample_stats"].get("return_pct")),
                      _text(dsr))
    return table


def _is_vs_oos_table(document: dict[str, Any], objective: str) -> Table:
    from backtest.report import LABELS, _text

    table = Table(title="in-sample (winners, mean over folds) vs out-of-sample (stitched)", header_style="bold")
    for column in ("Metric", "In-sample", "Out-of-sample"):
        table.add_column(column, justify="right")
    keys = dict.fromkeys([objective, "return_pct", "cagr_pct", "sharpe", "sortino", "max_drawdown_pct", "trades",
                          "win_rate_pct", "profit_factor"])
    for key in keys:
        table.add_row(LABELS.get(key, key), _text(document["in_sample_mean"].get(key)),
                      _text(document["out_of_sample"].get(key)))
    table.add_row("Walk-forward efficiency (OOS / IS CAGR)", "", _text(document["walk_forward_efficiency"]))
    return table


def register(app: typer.Typer) -> None:
    """Add the research commands to the main `tickbridge` app."""
    app.command("sweep")(sweep)
    app.command("montecarlo")(montecarlo)
    app.command("wfo")(wfo)
