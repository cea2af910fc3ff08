"""Job traces for replay: Philly (../shared/data/philly/philly.csv) and a generic CSV.

A trace is columnar: per job its arrival (ms after the first arrival), duration (ms), GPUs and
fair-share group, sorted by arrival and then by file line. Rows that parse but cannot be replayed
(0 GPUs, a duration of 0 s or less) are skipped and counted by reason in `Trace.skipped`, never
dropped silently. Rows that do not parse stop the load with a `TraceError` naming the file, the line
and the column.

Formats:
- Philly: `timestamp,duration,num_gpus,gpu_time,cluster`; timestamp `YYYY-MM-DD HH:MM:SS` (the trace
  gives no time zone; only differences are used), duration in seconds, the virtual cluster is the group.
- Generic CSV: `timestamp,duration,num_gpus` and optionally `group`; timestamp in seconds (a number) or
  an ISO date-time, duration in seconds. Other columns are ignored.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

PHILLY_COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")
CSV_COLUMNS = ("timestamp", "duration", "num_gpus")


class TraceError(ValueError):
    """A trace file that cannot be read: names the file, and the line and column when one is at fault."""


@dataclass
class Trace:
    """Jobs sorted by arrival: arrival_ms (after the first arrival), duration_ms, gpus, group, source line."""

    name: str
    path: Path | None
    arrival_ms: IntArray
    duration_ms: IntArray
    gpus: IntArray
    group: list[str]
    line: IntArray
    skipped: dict[str, int] = field(default_factory=dict)
    rows: int = 0

    def __len__(self) -> int:
        return len(self.arrival_ms)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def _seconds(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"{path}:{line}: column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{path}:{line}: column {column!r}: {text!r} is not a finite number")
    return value


def _timestamp_s(text: str, path: Path, line: int, *, numeric: bool) -> float:
    if numeric:
        try:
            return _seconds(text, path, line, "timestamp")
        except TraceError:
            pass
    try:
        stamp = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        want = "seconds or an ISO date-time" if numeric else "YYYY-MM-DD HH:MM:SS"
        raise TraceError(f"{path}:{line}: column 'timestamp': {text!r} is not {want}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)  # naive stamps: only differences matter
    return stamp.timestamp()


def _gpus(text: str, path: Path, line: int) -> int:
    try:
        value = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            raise TraceError(f"{path}:{line}: column 'num_gpus': {text!r} is not a whole number") from None
        if not as_float.is_integer():
            raise TraceError(f"{path}:{line}: column 'num_gpus': {text!r} is not a whole number") from None
        value = int(as_float)
    if value < 0:
        raise TraceError(f"{path}:{line}: column 'num_gpus': {value} is negative")
    return value


def _read(path: Path, name: str, required: tuple[str, ...], group_column: str | None, *, numeric: bool) -> Trace:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc.strerror or exc})") from None
    stamps: list[float] = []
    durations: list[int] = []
    gpus: list[int] = []
    groups: list[str] = []
    lines: list[int] = []
    skipped: dict[str, int] = {}
    rows = 0
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise TraceError(f"{path}: the file is empty (want a header {','.join(required)})") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TraceError(f"{path}:1: not a CSV file ({exc})") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceError(f"{path}:1: the header lacks column {', '.join(repr(c) for c in missing)} "
                             f"(want {','.join(required)}; got {','.join(header)})")
        at = {c: header.index(c) for c in header}
        i_ts, i_dur, i_gpu = at["timestamp"], at["duration"], at["num_gpus"]
        i_group = at.get(group_column) if group_column else None
        width = len(header)
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                rows += 1
                if len(row) != width:
                    raise TraceError(f"{path}:{line}: {len(row)} columns, the header has {width}")
                stamp = _timestamp_s(row[i_ts], path, line, numeric=numeric)
                seconds = _seconds(row[i_dur], path, line, "duration")
                count = _gpus(row[i_gpu], path, line)
                if count == 0:
                    skipped["no GPUs"] = skipped.get("no GPUs", 0) + 1
                    continue
                if seconds <= 0:
                    skipped["duration <= 0 s"] = skipped.get("duration <= 0 s", 0) + 1
                    continue
                stamps.append(stamp)
                durations.append(max(1, round(seconds * 1000)))
                gpus.append(count)
                groups.append(row[i_group].strip() if i_group is not None else "")
                lines.append(line)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TraceError(f"{path}:{reader.line_num}: not a CSV row ({exc})") from None
    if not stamps:
        raise TraceError(f"{path}: no job to replay ({rows} rows, {sum(skipped.values())} skipped: "
                         f"{', '.join(f'{k}: {v}' for k, v in skipped.items()) or 'none'})")
    stamp_arr = np.array(stamps, dtype=np.float64)
    offset_ms = np.rint((stamp_arr - stamp_arr.min()) * 1000).astype(np.int64)
    line_arr = np.array(lines, dtype=np.int64)
    order = np.lexsort((line_arr, offset_ms))
    return Trace(name=name, path=path, arrival_ms=offset_ms[order], duration_ms=np.array(durations, np.int64)[order],
                 gpus=np.array(gpus, np.int64)[order], group=[groups[i] for i in order.tolist()],
                 line=line_arr[order], skipped=skipped, rows=rows)


def load_philly(path: Path) -> Trace:
    """The Philly trace (columns timestamp,duration,num_gpus,gpu_time,cluster); raises TraceError."""
    return _read(path, "philly", PHILLY_COLUMNS, "cluster", numeric=False)


def load_csv(path: Path) -> Trace:
    """A generic trace (columns timestamp,duration,num_gpus[,group]); raises TraceError."""
    return _read(path, path.stem, CSV_COLUMNS, "group", numeric=True)


def load_trace(spec: str, data_dir: Path | None = None) -> Trace:
    """`philly` (from the shared data folder, see `pools.find_data_dir`) or a path to a generic CSV."""
    if spec == "philly":
        from computegrid.sim.pools import find_data_dir

        return load_philly(find_data_dir(data_dir) / "philly" / "philly.csv")
    path = Path(spec)
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file (give 'philly' or a CSV with columns "
                         f"{','.join(CSV_COLUMNS)})")
    return load_csv(path)


def compress(trace: Trace, speedup: float) -> Trace:
    """The trace with arrivals `speedup` times closer together (arrival ms / speedup, floored); durations
    unchanged. A way to load a big pool with a small trace; 1 leaves it as it is."""
    if not speedup > 0 or not math.isfinite(speedup):
        raise ValueError(f"speedup must be a positive number, got {speedup}")
    if speedup == 1:
        return trace
    arrival = np.floor(trace.arrival_ms / speedup).astype(np.int64)
    return Trace(name=f"{trace.name} x{speedup:g}", path=trace.path, arrival_ms=arrival, duration_ms=trace.duration_ms,
                 gpus=trace.gpus, group=trace.group, line=trace.line, skipped=dict(trace.skipped), rows=trace.rows)
