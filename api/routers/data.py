"""The server's market data, by name: what a paper bot's `data` may name.

The files of the data directories (TICKBRIDGE_DATA_DIRS, default the bundled data/ folder) are
listed by name with what they hold; their paths are never shown, and a bot config can only name
one of them (live.feed.DataCatalog), so a caller cannot make the server read a file of
its choosing. Any logged-in user may list them: traders pick one, subscribers see what a bot
they follow trades on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import Caller, Ctx
from live.feed import DataCatalog, DataSource

router = APIRouter(prefix="/data-sources", tags=["data"])


class DataSourceOut(BaseModel):
    name: str = Field(description="what a bot config's `data` names")
    symbols: list[str]
    kind: Literal["ticks", "bars"] = Field(description="bars replay as five quotes each (open, open, the two "
                                                       "extremes in the bar's likely order, close)")
    rows: int
    first: datetime = Field(description="first row's time, ISO 8601 UTC (to the microsecond)")
    last: datetime
    first_ns: int = Field(description="first row's time, integer nanoseconds since the epoch (UTC)")
    last_ns: int
    period: str | None = Field(description="bars: their usual spacing as a pandas alias (1min, 1h, 1D)")


def _out(source: DataSource) -> DataSourceOut:
    return DataSourceOut(name=source.name, symbols=list(source.symbols), kind=source.kind, rows=source.rows,
                         first=source.first, last=source.last, first_ns=source.first_ns, last_ns=source.last_ns,
                         period=source.period)


@router.get("", response_model=list[DataSourceOut], summary="the data sources a paper bot may replay, by name")
def list_sources(_caller: Caller, ctx: Ctx) -> list[DataSourceOut]:
    return [_out(s) for s in DataCatalog(ctx.settings.data_dirs).sources()]
