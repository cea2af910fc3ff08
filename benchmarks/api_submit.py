"""Sustained job-submission load on the control plane's API: throughput and latency, SQLite and PostgreSQL.

Starts `computegrid up --no-agent` as a subprocess on a fresh state directory (and, for PostgreSQL, a
freshly created database), drives `POST /v1/jobs` from a few client processes over keep-alive HTTP/1.1
connections on loopback, measures every request, checks that the server stored exactly as many jobs as
it answered 201 for, and stops the server again (SIGINT, then SIGKILL after a timeout).

    .venv/bin/python benchmarks/api_submit.py                      # both databases, defaults
    .venv/bin/python benchmarks/api_submit.py --db postgres --duration 30 --concurrency 64
    .venv/bin/python benchmarks/api_submit.py --db postgres --pg-options '-c synchronous_commit=off'
    .venv/bin/python benchmarks/api_submit.py --db postgres --py-spy /tmp/submit.svg

The client is a non-blocking socket loop per process (no HTTP library), so on a small machine most CPU
goes to the server. Output: a progress line per second, a summary table, then one JSON object per line
per figure ({"bench": "api_submit", "db": ..., "metric": ..., "value": ...}).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import multiprocessing as mp
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import SynchronizedArray
from pathlib import Path
from typing import Any

BENCH = "api_submit"
JOB_SPEC = {"name": "bench", "run": "true", "resources": {"cpus": 0.1, "memory_gb": 0.1}}
REQUEST_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
START_TIMEOUT_S = 60.0
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432"


# --------------------------------------------------------------------------------------------- client


def build_request(port: int, api_key: str) -> bytes:
    body = json.dumps(JOB_SPEC).encode()
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def parse_response(buf: bytearray) -> tuple[int, int, bool] | None:
    """(status, bytes consumed, server wants close) for one complete response at the start of buf, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    close = b"\r\nconnection: close" in head
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        total = end + 4 + int(head[i + 17:j if j >= 0 else len(head)])
        return (status, total, close) if len(buf) >= total else None
    if b"\r\ntransfer-encoding: chunked" in head:
        pos = end + 4
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            pos = eol + 2 + size + 2
            if len(buf) < pos:
                return None
            if size == 0:
                return status, pos, close
    return None  # no length: the body ends at close; not expected from uvicorn for these routes


@dataclass
class Conn:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    sent_at: float = 0.0
    busy: bool = False


def client_worker(index: int, port: int, request: bytes, nconn: int, times: SynchronizedArray,  # type: ignore[type-arg]
                  counters: SynchronizedArray, go: Any, result: Connection) -> None:  # type: ignore[type-arg]
    """Keep `nconn` requests in flight until the end time; record latencies of those finishing in the window.

    counters[index*2] = 2xx answers so far, counters[index*2+1] = errors so far (for progress lines).
    times = [measure_from, measure_until] (monotonic, shared by all processes on Linux).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the parent
    sel = selectors.DefaultSelector()
    conns: list[Conn] = []
    lat = array("d")
    statuses: dict[str, int] = {}
    ok_total = err_total = conn_errors = timeouts = 0
    cpu0 = time.process_time()

    def connect() -> Conn:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        c = Conn(sock)
        sel.register(sock, selectors.EVENT_READ, c)
        return c

    def send(c: Conn) -> None:
        c.sent_at = time.monotonic()
        c.busy = True
        view = memoryview(request)
        while view:
            try:
                n = c.sock.send(view)
                view = view[n:]
            except BlockingIOError:
                select.select([], [c.sock], [], 1.0)

    def replace(c: Conn) -> Conn:
        with contextlib.suppress(Exception):
            sel.unregister(c.sock)
        c.sock.close()
        conns.remove(c)
        fresh = connect()
        conns.append(fresh)
        return fresh

    try:
        for _ in range(nconn):
            conns.append(connect())
        result.send(("ready", index))
        go.wait()
        measure_from, measure_until = times[0], times[1]
        for c in conns:
            send(c)
        while True:
            now = time.monotonic()
            stopping = now >= measure_until
            if stopping and not any(c.busy for c in conns):
                break
            if stopping and now > measure_until + REQUEST_TIMEOUT_S:
                timeouts += sum(c.busy for c in conns)
                break
            for key, _ in sel.select(timeout=0.2):
                c = key.data
                if c.sock.fileno() < 0:  # replaced earlier in this batch
                    continue
                try:
                    data = c.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # the server closed the connection under a request
                    conn_errors += 1
                    err_total += 1
                    counters[index * 2 + 1] = err_total
                    c = replace(c)
                    if time.monotonic() < measure_until:
                        send(c)
                    continue
                c.buf += data
                parsed = parse_response(c.buf)
                if parsed is None:
                    continue
                status, used, close = parsed
                done = time.monotonic()
                del c.buf[:used]
                c.busy = False
                if 200 <= status < 300:
                    ok_total += 1
                    counters[index * 2] = ok_total
                    if measure_from <= done < measure_until:
                        lat.append(done - c.sent_at)
                else:
                    err_total += 1
                    counters[index * 2 + 1] = err_total
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                if close:
                    c = replace(c)
                if done < measure_until:
                    send(c)
            now = time.monotonic()
            for c in list(conns):
                if c.busy and now - c.sent_at > REQUEST_TIMEOUT_S:
                    timeouts += 1
                    err_total += 1
                    counters[index * 2 + 1] = err_total
                    c = replace(c)
                    if now < measure_until:
                        send(c)
        result.send(("done", {"index": index, "latencies": lat.tobytes(), "ok_total": ok_total,
                              "err_total": err_total, "statuses": statuses, "conn_errors": conn_errors,
                              "timeouts": timeouts, "cpu_s": time.process_time() - cpu0}))
    except Exception as exc:  # report instead of dying silently
        result.send(("error", f"client {index}: {type(exc).__name__}: {exc}"))
    finally:
        for c in conns:
            with contextlib.suppress(Exception):
                c.sock.close()


# --------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_json(port: int, method: str, path: str, api_key: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if body else None
    finally:
        conn.close()


def cpu_ticks(pid: int) -> int:
    """utime+stime of a process (all threads) and its child processes (e.g. extra API workers), in clock ticks."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total


def postgres_ticks() -> int:
    """CPU ticks of PostgreSQL (read-only look at /proc): running processes, plus the postmaster's reaped
    children, so backends that exit during the run (e.g. the pool's overflow connections) still count."""
    procs: dict[int, list[str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        if stat.split(" (", 1)[1].startswith("postgres"):
            procs[int(entry.name)] = stat.rsplit(")", 1)[1].split()
    total = 0
    for fields in procs.values():
        total += int(fields[11]) + int(fields[12])
        if int(fields[1]) not in procs:  # the postmaster: add its waited-for children's time
            total += int(fields[13]) + int(fields[14])
    return total


def system_busy() -> tuple[int, int]:
    """(busy, total) jiffies from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts[:8]) - idle, sum(parts[:8])


def pg_url(base: str, dbname: str, options: str | None) -> str:
    url = f"{base.rstrip('/')}/{dbname}"
    if options:
        url += "?options=" + urllib.parse.quote(options)
    return url


def pg_sessions(base: str, dbname: str) -> int | None:
    """Connections ever opened to the database (pg_stat_database.sessions, PostgreSQL 14+)."""
    import psycopg

    try:
        with psycopg.connect(f"{base.rstrip('/')}/postgres", autocommit=True) as conn:
            row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (dbname,)).fetchone()
            return int(row[0]) if row and row[0] is not None else None
    except psycopg.Error:
        return None


def recreate_pg_database(base: str, dbname: str, *, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{base.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{dbname}"')


def _die_with_parent() -> None:
    """In the server child: get SIGINT (a clean stop) if this benchmark dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


class Server:
    """`computegrid up --no-agent` in its own session; always stopped by `stop()`."""

    def __init__(self, workdir: Path, port: int, database_url: str | None, extra_env: dict[str, str],
                 workers: int = 0):
        self.workers = workers  # 0: the embedded `up`; N: `serve --workers N` plus a `scheduler` process
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workdir = workdir
        self.port = port
        self.database_url = database_url
        self.extra_env = extra_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    def base(self) -> list[str]:
        exe = Path(sys.executable).parent / "computegrid"
        return [str(exe)] if exe.exists() else [sys.executable, "-m", "computegrid"]

    def command(self) -> list[str]:
        base = self.base()
        if self.workers:
            return base + ["serve", "--workers", str(self.workers), "--port", str(self.port),
                           "--state-dir", str(self.workdir / "state")]
        return base + ["up", "--no-agent", "--port", str(self.port), "--state-dir", str(self.workdir / "state")]

    def start(self) -> str:
        """Start, wait for /healthz, and return the operator API key."""
        env = dict(os.environ)
        env.pop("COMPUTEGRID_DATABASE_URL", None)
        env.pop("COMPUTEGRID_API_KEY", None)
        env.pop("COMPUTEGRID_URL", None)
        env["XDG_CONFIG_HOME"] = str(self.workdir / "xdg")
        if self.database_url:
            env["COMPUTEGRID_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.workdir, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode} before answering:\n"
                                   + self.log_tail())
            try:
                status, body = http_json(self.port, "GET", "/healthz")
                if status == 200:
                    break
                last = f"HTTP {status} {body}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise RuntimeError(f"/healthz did not answer 200 within {START_TIMEOUT_S:.0f} s (last: {last}):\n"
                                   + self.log_tail())
            time.sleep(0.1)
        if self.workers:
            with open(self.workdir / "scheduler.log", "wb") as log:
                self.scheduler = subprocess.Popen(
                    self.base() + ["scheduler", "--state-dir", str(self.workdir / "state")], cwd=self.workdir,
                    env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=_die_with_parent)
        creds = json.loads((self.workdir / "xdg" / "computegrid" / "credentials.json").read_text())
        return str(creds["api_key"])

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> str:
        """SIGINT, wait, then SIGKILL. Returns how it ended."""
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.send_signal(signal.SIGINT)
            try:
                self.scheduler.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.scheduler.kill()
                self.scheduler.wait(timeout=10)
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return "not running" if proc is None else f"had exited ({proc.returncode})"
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            return f"stopped cleanly by SIGINT (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            return f"did not stop within {STOP_TIMEOUT_S:.0f} s of SIGINT: killed"


# --------------------------------------------------------------------------------------------- one run


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def start_py_spy(pid: int, out: str, seconds: float, db: str) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("  (py-spy not found: pip install py-spy into the venv; profiling skipped)")
        return None
    path = out if db == "only" else _suffixed(out, db)
    fmt = "speedscope" if path.endswith(".json") else ("raw" if path.endswith((".txt", ".folded")) else "flamegraph")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    print(f"  profiling server pid {pid} with py-spy for {seconds:.0f} s -> {path} (its messages: {path}.log)")
    with open(path + ".log", "wb") as log:
        return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                                 "--rate", "100", "--gil", "--format", fmt, "--output", path, "--nonblocking",
                                 "--subprocesses"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _suffixed(path: str, db: str) -> str:
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{db}{p.suffix}"))


def run_one(db: str, args: argparse.Namespace) -> dict[str, Any]:
    port = args.port or free_port()
    if not port_free(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is taken; pass another --port")
    extra_env = dict(kv.split("=", 1) for kv in args.server_env)
    database_url = pg_url(args.pg_url, args.pg_db, args.pg_options) if db == "postgres" else None
    if db == "postgres":
        recreate_pg_database(args.pg_url, args.pg_db)
    workdir = Path(tempfile.mkdtemp(prefix=f"cg-bench-{db}-"))
    server = Server(workdir, port, database_url, extra_env, args.workers)
    ctx = mp.get_context("fork")
    procs: list[Any] = []
    parent_ends: list[Connection] = []
    spy: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"db": db}
    try:
        print(f"[{db}] starting server on 127.0.0.1:{port} (state in {workdir}"
              + (f", database {args.pg_db}" if db == "postgres" else "") + ")")
        t = time.monotonic()
        api_key = server.start()
        assert server.proc is not None
        print(f"[{db}] server pid {server.proc.pid} healthy after {time.monotonic() - t:.1f} s; "
              f"{args.concurrency} in flight from {args.clients} client process(es), "
              f"{args.warmup:.0f} s warm-up + {args.duration:.0f} s measured")
        request = build_request(port, api_key)
        nclients = max(1, min(args.clients, args.concurrency))
        times = ctx.Array("d", 2, lock=False)
        counters = ctx.Array("q", 2 * nclients, lock=False)
        go = ctx.Event()
        for i, n in enumerate(split(args.concurrency, nclients)):
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=client_worker, args=(i, port, request, n, times, counters, go, child), daemon=True)
            p.start()
            child.close()
            procs.append(p)
            parent_ends.append(parent)
        for end in parent_ends:
            if not end.poll(30):
                raise RuntimeError("a client process did not connect within 30 s")
            kind, info = end.recv()
            if kind != "ready":
                raise RuntimeError(str(info))
        start = time.monotonic()
        times[0] = start + args.warmup
        times[1] = start + args.warmup + args.duration
        go.set()

        # progress, one line a second; CPU counters are sampled at the edges of the measured window
        last_ok, last_t, sampled_start = 0, start, False
        srv0 = pg0 = 0
        sys0 = (0, 0)
        sessions0: int | None = None
        while time.monotonic() < times[1]:
            time.sleep(min(1.0, max(0.01, times[1] - time.monotonic())))
            now = time.monotonic()
            if not sampled_start and now >= times[0] - 0.05:
                srv0 = cpu_ticks(server.proc.pid)
                pg0 = postgres_ticks() if db == "postgres" else 0
                sessions0 = pg_sessions(args.pg_url, args.pg_db) if db == "postgres" else None
                sys0 = system_busy()
                sampled_start = True
                if args.py_spy:
                    spy = start_py_spy(server.proc.pid, args.py_spy, args.duration, db if args.db == "both" else "only")
            ok = sum(counters[i * 2] for i in range(nclients))
            err = sum(counters[i * 2 + 1] for i in range(nclients))
            phase = "warm-up " if now < times[0] else "measured"
            rate = (ok - last_ok) / (now - last_t) if now > last_t else 0.0
            print(f"  [{db}] {phase} t={now - start:5.1f}s  ok={ok:>7}  errors={err:>4}  last 1s: {rate:7.1f} req/s",
                  flush=True)
            last_ok, last_t = ok, now
            if server.proc.poll() is not None:
                raise RuntimeError(f"the server died during the run:\n{server.log_tail()}")
        srv1 = cpu_ticks(server.proc.pid)
        pg1 = postgres_ticks() if db == "postgres" else 0
        sys1 = system_busy()
        sessions1 = pg_sessions(args.pg_url, args.pg_db) if db == "postgres" else None

        reports: list[dict[str, Any]] = []
        for end in parent_ends:
            if not end.poll(REQUEST_TIMEOUT_S + 15):
                raise RuntimeError("a client process did not report after the run")
            kind, info = end.recv()
            if kind != "done":
                raise RuntimeError(str(info))
            reports.append(info)
        for p in procs:
            p.join(5)
        if spy is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(timeout=30)

        lat: list[float] = []
        for r in reports:
            a = array("d")
            a.frombytes(r["latencies"])
            lat.extend(a)
        lat.sort()
        statuses: dict[str, int] = {}
        for r in reports:
            for k, v in r["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        hz = os.sysconf("SC_CLK_TCK")
        n = len(lat)
        ok_total = sum(r["ok_total"] for r in reports)
        busy, total = sys1[0] - sys0[0], sys1[1] - sys0[1]
        result.update({
            "submissions_per_s": n / args.duration,
            "p50_latency_ms": percentile(lat, 50) * 1000,
            "p90_latency_ms": percentile(lat, 90) * 1000,
            "p99_latency_ms": percentile(lat, 99) * 1000,
            "max_latency_ms": (lat[-1] * 1000) if lat else float("nan"),
            "errors": sum(r["err_total"] for r in reports),
            "error_statuses": statuses,
            "connection_errors": sum(r["conn_errors"] for r in reports),
            "timeouts": sum(r["timeouts"] for r in reports),
            "measured_ok": n,
            "ok_total": ok_total,
            "server_cpu_ms_per_submission": ((srv1 - srv0) / hz * 1000 / n) if n else float("nan"),
            "server_cpu_cores": (srv1 - srv0) / hz / args.duration,
            "client_cpu_cores": sum(r["cpu_s"] for r in reports) / (args.warmup + args.duration),
            "machine_busy_pct": 100.0 * busy / total if total else float("nan"),
        })
        if db == "postgres":
            result["postgres_cpu_ms_per_submission"] = ((pg1 - pg0) / hz * 1000 / n) if n else float("nan")
            result["postgres_cpu_cores"] = (pg1 - pg0) / hz / args.duration
            if sessions0 is not None and sessions1 is not None:
                result["postgres_connections_opened"] = sessions1 - sessions0
        # CPU used by anything else on the machine (other jobs make the figures noisy)
        ncpu = os.cpu_count() or 1
        result["other_cpu_cores"] = max(0.0, busy / total * ncpu - result["server_cpu_cores"]
                                        - result["client_cpu_cores"] - result.get("postgres_cpu_cores", 0.0))

        # the server must hold exactly one job per 2xx answer (ids start at 1 on a fresh database)
        status, newest = http_json(port, "GET", "/v1/jobs?limit=1", api_key)
        stored = int(newest[0]["id"]) if status == 200 and newest else 0
        result["jobs_stored"] = stored
        result["stored_matches_2xx"] = stored == ok_total
        print(f"[{db}] check: newest job id {stored}, 2xx answers {ok_total} -> "
              + ("OK, every accepted submission is stored" if stored == ok_total else "MISMATCH"))
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(5)
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        how = server.stop()
        print(f"[{db}] server {how}")
        if "cleanly" not in how and server.proc is not None:
            print(server.log_tail(10))
        if db == "postgres" and not args.keep_db:
            with contextlib.suppress(Exception):
                recreate_pg_database(args.pg_url, args.pg_db, drop_only=True)
        if args.keep_state:
            print(f"[{db}] state kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


# --------------------------------------------------------------------------------------------- report

ROWS = [("submissions/s", "submissions_per_s", "{:.1f}"), ("p50 latency ms", "p50_latency_ms", "{:.1f}"),
        ("p90 latency ms", "p90_latency_ms", "{:.1f}"), ("p99 latency ms", "p99_latency_ms", "{:.1f}"),
        ("max latency ms", "max_latency_ms", "{:.1f}"), ("errors", "errors", "{}"),
        ("server CPU ms / submission", "server_cpu_ms_per_submission", "{:.2f}"),
        ("server CPU cores", "server_cpu_cores", "{:.2f}"),
        ("postgres CPU ms / submission", "postgres_cpu_ms_per_submission", "{:.2f}"),
        ("postgres CPU cores", "postgres_cpu_cores", "{:.2f}"),
        ("postgres connections opened", "postgres_connections_opened", "{}"),
        ("client CPU cores", "client_cpu_cores", "{:.2f}"),
        ("other processes' CPU cores", "other_cpu_cores", "{:.2f}"), ("machine busy %", "machine_busy_pct", "{:.0f}"),
        ("jobs stored == 2xx answers", "stored_matches_2xx", "{}")]
JSON_METRICS = ["submissions_per_s", "p50_latency_ms", "p90_latency_ms", "p99_latency_ms", "errors",
                "server_cpu_ms_per_submission", "postgres_cpu_ms_per_submission", "postgres_connections_opened",
                "stored_matches_2xx"]


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if not results:
        return
    width = 30
    print()
    print(f"api_submit: {args.concurrency} in flight, {args.duration:.0f} s measured after {args.warmup:.0f} s warm-up"
          + (f", postgres options {args.pg_options!r}" if args.pg_options else "")
          + (f", server env {' '.join(args.server_env)}" if args.server_env else ""))
    print("-" * width + "".join(f"{r['db']:>14}" for r in results))
    for label, key, fmt in ROWS:
        if not any(key in r for r in results):
            continue
        cells = "".join(f"{fmt.format(r[key]) if key in r else '-':>14}" for r in results)
        print(f"{label:<{width}}{cells}")
    for r in results:
        if r.get("other_cpu_cores", 0) > 0.25:
            print(f"  note: other processes used {r['other_cpu_cores']:.2f} cores during the {r['db']} run; "
                  f"figures are noisy (CPU ms per submission is the steadier figure)")
        if r.get("error_statuses") or r.get("connection_errors") or r.get("timeouts"):
            print(f"  {r['db']}: error statuses {r['error_statuses']}, connection errors {r['connection_errors']}, "
                  f"timeouts {r['timeouts']}")
    print()
    for r in results:
        for key in JSON_METRICS:
            if key in r:
                value = r[key]
                value = round(value, 3) if isinstance(value, float) else value
                line = {"bench": BENCH, "db": r["db"], "metric": key, "value": value,
                        "concurrency": args.concurrency, "duration_s": args.duration,
                        "layout": f"serve --workers {args.workers} + scheduler" if args.workers else "up"}
                if args.pg_options:
                    line["pg_options"] = args.pg_options
                print(json.dumps(line))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of measured load (default 15)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring (default 3)")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    ap.add_argument("--clients", type=int, default=2, help="client processes sharing the connections (default 2)")
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", PG_DEFAULT),
                    help=f"PostgreSQL server URL without database (default {PG_DEFAULT})")
    ap.add_argument("--pg-db", default="computegrid_bench", help="database to drop and create for the run")
    ap.add_argument("--pg-options", default=None,
                    help="libpq options for the server's connections, e.g. '-c synchronous_commit=off'")
    ap.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the server process (repeatable)")
    ap.add_argument("--workers", type=int, default=0, metavar="N",
                    help="0 (default): the embedded `computegrid up`; N: the full-size layout, `computegrid serve "
                         "--workers N` plus a separate `computegrid scheduler` process")
    ap.add_argument("--py-spy", default=None, metavar="FILE",
                    help="record the server with py-spy during the measured window (.svg, .json speedscope, .txt)")
    ap.add_argument("--keep-db", action="store_true", help="do not drop the PostgreSQL database afterwards")
    ap.add_argument("--keep-state", action="store_true", help="keep the temporary state directory")
    args = ap.parse_args(argv)

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # run the finally blocks: stop clients and server

    signal.signal(signal.SIGTERM, on_term)
    if args.concurrency < 1 or args.duration <= 0 or args.warmup < 0:
        ap.error("--concurrency must be >= 1, --duration > 0 and --warmup >= 0")

    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: list[dict[str, Any]] = []
    failed = False
    for db in dbs:
        if db == "postgres":
            parsed = urllib.parse.urlsplit(args.pg_url)
            host, pport = parsed.hostname or "127.0.0.1", parsed.port or 5432
            if not answers(host, pport):
                print(f"[postgres] skipped: nothing answers at {host}:{pport}")
                continue
        try:
            results.append(run_one(db, args))
        except KeyboardInterrupt:
            print(f"[{db}] interrupted")
            failed = True
            break
        except Exception as exc:
            print(f"[{db}] FAILED: {type(exc).__name__}: {exc}")
            failed = True
    report(results, args)
    return 1 if failed or not all(r.get("stored_matches_2xx") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
