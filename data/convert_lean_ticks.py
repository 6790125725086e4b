"""Convert one LEAN forex tick file (QuantConnect's Data/ layout) into a plain tick CSV.

LEAN stores a day of quotes as a zip holding a header-less CSV `ms_since_midnight,bid,ask`, with
the date in the file name (YYYYMMDD_quote.zip) and times in UTC. We write `time,bid,ask` with ISO
8601 UTC times to the millisecond and the bid/ask text exactly as LEAN wrote it.

    python data/convert_lean_ticks.py SRC.zip DEST.csv.gz
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path


def convert(source: Path, dest: Path) -> int:
    day = datetime.strptime(source.name[:8], "%Y%m%d").replace(tzinfo=timezone.utc)
    with zipfile.ZipFile(source) as archive:
        text = archive.read(archive.namelist()[0]).decode()
    rows = 0
    with gzip.open(dest, "wt", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["time", "bid", "ask"])
        for ms, bid, ask in csv.reader(io.StringIO(text)):
            stamp = day + timedelta(milliseconds=int(ms))
            writer.writerow([stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z", bid, ask])
            rows += 1
    return rows


if __name__ == "__main__":
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])), "ticks written")
