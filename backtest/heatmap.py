"""The objective over a sweep's grid, as a picture: a heatmap for two or more swept parameters
(the best value over the others), a line for one. PNG, or HTML with the figure embedded as SVG
(no CDN, opens anywhere), like backtest.plot."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from engine.errors import ConfigError  # noqa: E402


def check_figure_path(path: Path, option: str) -> None:
    """Refuse a figure name we cannot write before the work starts, not after."""
    if path.suffix.lower() not in (".png", ".html"):
        raise ConfigError(option, f"{path}: use a .png or .html file name")


def objective_table(rows: list[dict[str, Any]], names: list[str], objective: str) -> pd.DataFrame:
    """Best objective per (first, second) parameter pair; NaN where nothing was defined."""
    frame = pd.DataFrame([{**r["params"], "_v": r["stats"].get(objective)} for r in rows])
    frame["_v"] = pd.to_numeric(frame["_v"], errors="coerce")
    if len(names) == 1:
        return frame.groupby(names[0])["_v"].max().to_frame(objective)
    return frame.pivot_table(index=names[1], columns=names[0], values="_v", aggfunc="max", dropna=False)


def write_heatmap(path: Path, rows: list[dict[str, Any]], names: list[str], objective: str, title: str) -> None:
    check_figure_path(path, "heatmap")
    path.parent.mkdir(parents=True, exist_ok=True)
    table = objective_table(rows, names, objective)
    fig, ax = plt.subplots(figsize=(9, 6.5))
    try:
        if len(names) == 1:
            ax.plot(table.index, table[objective], marker="o")
            ax.set_xlabel(names[0])
            ax.set_ylabel(objective)
        else:
            values = table.to_numpy(dtype=np.float64)
            image = ax.imshow(np.ma.masked_invalid(values), origin="lower", aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(table.columns)), [str(c) for c in table.columns], rotation=90, fontsize=7)
            ax.set_yticks(range(len(table.index)), [str(i) for i in table.index], fontsize=7)
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
            fig.colorbar(image, ax=ax,
                         label=objective + (" (best over the other parameters)" if len(names) > 2 else ""))
        ax.set_title(title)
        fig.tight_layout()
        save_figure(fig, path, title)
    finally:
        plt.close(fig)


def save_figure(fig: plt.Figure, path: Path, title: str) -> None:
    if path.suffix.lower() == ".png":
        fig.savefig(path, dpi=110)
        return
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                    f"<body style='margin:0'>{svg}</body></html>")
