"""The Slurm backend: each job attempt is one Slurm batch job, driven through Slurm's own commands.

Tested against Debian 12's slurm-wlm 22.05.8 (see scripts/slurm-up.sh and docs/backends/slurm.md);
meant for Slurm 22.05 and newer. Which output each command is read in, and why:

- inventory: `sinfo --json` (the openapi/v0.0.38 plugin ships in Debian's slurm-wlm-basic-plugins).
  When `--json` is not there (no openapi plugin), `scontrol -o -d show node` is parsed instead.
- status: `scontrol -o show job ID` while slurmctld still holds the job (MinJobAge after it ends),
  then `sacct -X -P` once it has gone. Not `squeue --json`: in 22.05 it ignores `-j`/`--name` and
  dumps the whole queue, and its exit code is a raw wait status. scontrol knows a job the moment
  sbatch returns, so the lag of slurmdbd (sacct has no row yet, or an old state) never shows.
- usage: `sacct -X -P` (AllocTRES, Start, End, NodeList), falling back to scontrol while slurmdbd
  has no row yet. Not `sacct --json`: in 22.05 it reports exit code 0 for a job that exited 3.
  All times are read as epoch seconds (SLURM_TIME_FORMAT=%s).

One attempt = one Slurm job named `cg-<job>-<attempt>` (the engine id) whose working directory is
`WORK/<engine id>/`: that directory holds the batch script, the output file and the GPU indices the
job was given. `WORK/slurm-jobs.json` maps engine ids to Slurm job ids. `submit` claims the attempt
under a lock (`WORK/<engine id>/claim`) and looks the name up in squeue and sacct before it calls
sbatch, so an agent that restarts (even with the map lost) re-attaches by Slurm id and never runs an
attempt twice. Jobs are submitted with `--no-requeue`: a retry is the platform's decision, not Slurm's.

WORK must be on a filesystem that the site's compute nodes share (as Slurm output files usually are).
Fencing: `renew_lease` writes `WORK/lease`, and each batch job runs a watchdog that cancels the job once that
lease has expired, leaving `WORK/<engine id>/stopped`, which `status` reports as lost (slurm_lease.py).

Options (each may also come from the site mapping file, `mapping_file`, a YAML mapping of the same
keys; options given directly win): `work_dir`, `slurm_conf`, `partition`, `account`, `gres_models`
(GRES type -> catalog model, e.g. {"a100": "A100-80G"}; untyped GPUs are looked up as "gpu"),
`bin_dir` (where sbatch and the rest live; default: PATH).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from computegrid.backends.base import (
    EngineState,
    ExecStatus,
    Inventory,
    InventoryDevice,
    LogRead,
    RunRequest,
    SubmitRefused,
    UsageSlice,
    read_log_file,
)
from computegrid.backends.slurm_lease import batch_script, watchdog_script
from computegrid.core.capabilities import EngineCapabilities

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 60
PREFIX = "cg-"
_ID_RE = re.compile(r"^cg-(\d+)-(\d+)$")
_MAPPING_KEYS = {"partition", "account", "gres_models", "slurm_conf", "bin_dir"}

_QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT"}
_FAILED = {"FAILED", "OUT_OF_MEMORY", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED",
           "SPECIAL_EXIT"}
_CANCELLED = {"CANCELLED", "REVOKED"}
_ACTIVE = _QUEUED | _RUNNING
# sbatch errors that say "try again later" rather than "never as asked".
_TRANSIENT = ("unable to contact", "socket timed out", "temporarily unable", "resource temporarily unavailable",
              "connection refused", "slurm_persist_conn", "communication connection failure", "zero bytes")


class SlurmError(RuntimeError):
    """A Slurm command failed in a way that may pass (controller unreachable, time-out)."""


class SlurmOptionError(TypeError, ValueError):
    """A bad backend option or mapping file (a TypeError too, so callers that treat a wrong keyword
    argument as a bad option report it the same way)."""


@dataclass(frozen=True)
class SlurmJob:
    """What Slurm says about one job, from scontrol or sacct."""

    job_id: str
    name: str
    state: str
    reason: str
    exit_code: int | None
    start_s: int | None
    end_s: int | None
    nodes: tuple[str, ...]
    tres: dict[str, str]
    workdir: str


def _epoch(value: str | None) -> int | None:
    if not value:
        return None
    try:
        seconds = int(value)
    except ValueError:
        return None  # Unknown, None, N/A
    return seconds if seconds > 0 else None


def _exit_code(value: str | None) -> int | None:
    """Slurm's "code:signal" as a shell would report it (128 + signal when killed by one)."""
    if not value or ":" not in value:
        return None
    code, _, signal = value.partition(":")
    try:
        if int(signal):
            return 128 + int(signal)
        return int(code)
    except ValueError:
        return None


def _tres(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def expand_hostlist(text: str) -> list[str]:
    """Expand a Slurm host list ("vm", "gpu[01-03,07],cpu5") without calling scontrol."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", text or ""):
        part = part.strip()
        if not part or part in ("(null)", "None", "None assigned"):
            continue
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not match:
            hosts.append(part)
            continue
        head, ranges, tail = match.groups()
        for r in ranges.split(","):
            lo, sep, hi = r.partition("-")
            if not sep:
                hosts.append(f"{head}{lo}{tail}")
                continue
            width = len(lo)
            for n in range(int(lo), int(hi) + 1):
                hosts.append(f"{head}{n:0{width}d}{tail}")
    return hosts


def _index_list(text: str) -> list[int]:
    """"0-1,3" -> [0, 1, 3]."""
    out: list[int] = []
    for r in (text or "").split(","):
        r = r.strip()
        if not r or not r[0].isdigit():
            continue
        lo, sep, hi = r.partition("-")
        out.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    return out


def parse_gres(text: str) -> list[tuple[str, str | None, int, list[int] | None]]:
    """GRES strings as Slurm prints them -> (name, type, count, indices or None).

    "gpu:a100:4(S:0-1),gpu:v100:2" -> [("gpu", "a100", 4, None), ("gpu", "v100", 2, None)];
    GresUsed "gpu:a100:2(IDX:0-1)" -> [("gpu", "a100", 2, [0, 1])].
    """
    out: list[tuple[str, str | None, int, list[int] | None]] = []
    if (text or "").strip() in ("", "(null)", "N/A"):
        return out
    for item in re.findall(r"[^,(]+(?:\([^)]*\))?", text):
        item = item.strip().strip(",")
        if not item or item in ("(null)", "N/A"):
            continue
        body, _, extra = item.partition("(")
        indices = None
        idx = re.search(r"IDX:([^)]*)", extra)
        if idx:
            indices = [] if idx.group(1) == "N/A" else _index_list(idx.group(1))
        fields = body.split(":")
        name = fields[0]
        gres_type: str | None = None
        count = 1
        if len(fields) >= 3:
            gres_type, count_text = fields[1], fields[2]
            count = int(count_text) if count_text.isdigit() else 0
        elif len(fields) == 2:
            if fields[1].isdigit():
                count = int(fields[1])
            else:
                gres_type = fields[1]
        out.append((name, gres_type, count, indices))
    return out


class SlurmBackend:
    name = "slurm"
    rank_logs = True  # a gang's first rank writes output.log (with Slurm's own messages), the others their own

    @property
    def capabilities(self) -> EngineCapabilities:
        """Whole GPUs only (GRES; no shard or MPS), commands not images, gangs through --nodes, and the
        models that `gres_models` maps a GRES type to (the only ones the inventory lists)."""
        return EngineCapabilities(shares=False, images=False, gangs=True,
                                  models=frozenset(self.gres_models.values()))

    def __init__(self, work_dir: str | Path, *, slurm_conf: str | None = None, partition: str | None = None,
                 account: str | None = None, gres_models: dict[str, str] | None = None,
                 bin_dir: str | None = None):
        self.work_dir = Path(work_dir).expanduser().resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.slurm_conf = str(Path(slurm_conf).expanduser().resolve()) if slurm_conf else None
        self.partition = partition or None
        self.account = account or None
        self.gres_models = {str(k): str(v) for k, v in (gres_models or {}).items()}
        self.bin_dir = bin_dir
        self._json_ok: bool | None = None
        self._warned: set[str] = set()
        self._lock_depth = 0

    # -- running Slurm's commands
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL",
                                                            "TZ", "SLURM_CONF")}
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["SLURM_TIME_FORMAT"] = "%s"
        return env

    def _cmd(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    def _run(self, args: list[str], *, env: dict[str, str] | None = None, check: bool = True,
             timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        argv = [self._cmd(args[0]), *args[1:]]
        try:
            done = subprocess.run(argv, env=env or self._env(), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError as exc:
            raise SlurmError(f"{argv[0]} not found (is Slurm installed? set bin_dir)") from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(f"{' '.join(argv)} did not answer in {timeout:.0f}s") from exc
        if check and done.returncode != 0:
            raise SlurmError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    # -- inventory
    def _model(self, gres_type: str | None) -> str | None:
        key = gres_type or "gpu"
        model = self.gres_models.get(key)
        if model is None and key not in self._warned:
            self._warned.add(key)
            log.warning("GRES type %r maps to no catalog model (gres_models); its devices are left out", key)
        return model

    def _devices(self, gres: str, used: str) -> tuple[InventoryDevice, ...]:
        """Number a node's GPUs as Slurm does (in gres.conf order) and mark the ones in use."""
        in_use: set[int] = set()
        for name, _type, _count, indices in parse_gres(used):
            if name == "gpu" and indices:
                in_use.update(indices)
        devices: list[InventoryDevice] = []
        index = 0
        for name, gres_type, count, _ in parse_gres(gres):
            if name != "gpu":
                continue
            model = self._model(gres_type)
            for _ in range(count):
                if model is not None:
                    devices.append(InventoryDevice(index=index, model=model, source="engine",
                                                   in_use=index in in_use))
                index += 1
        return tuple(devices)

    @staticmethod
    def _node_state(state: str, flags: list[str]) -> str:
        words = {w.upper() for w in re.split(r"[+\s]", state) if w} | {f.upper() for f in flags}
        base = state.split("+")[0].upper()
        if base in ("DOWN", "UNKNOWN", "FUTURE", "ERROR") or words & {"NOT_RESPONDING", "POWERED_DOWN",
                                                                      "POWERING_DOWN", "FAIL", "REBOOT_ISSUED"}:
            return "down"
        if base == "DRAIN" or words & {"DRAIN", "DRAINED", "DRAINING", "MAINT", "MAINTENANCE", "FAILING"}:
            return "drained"
        return "up"

    def inventory(self) -> list[Inventory]:
        nodes = self._inventory_json() if self._json_ok is not False else None
        if nodes is None:
            nodes = self._inventory_scontrol()
        return nodes

    def _inventory_json(self) -> list[Inventory] | None:
        done = self._run(["sinfo", "--json"], check=False)
        try:
            data = json.loads(done.stdout) if done.returncode == 0 else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or "nodes" not in data:
            if self._json_ok is None:
                log.info("sinfo --json is not available here (%s); reading scontrol instead",
                         done.stderr.strip() or "no JSON")
            self._json_ok = False
            return None
        self._json_ok = True
        out = []
        for node in data["nodes"]:
            if self.partition and self.partition not in (node.get("partitions") or []):
                continue
            cpus = int(node.get("cpus") or 0)
            alloc = int(node.get("alloc_cpus") or 0)
            state = node.get("state") or "unknown"
            out.append(Inventory(
                hostname=str(node["name"]), cpu_milli=cpus * 1000, memory_mb=int(node.get("real_memory") or 0),
                devices=self._devices(str(node.get("gres") or ""), str(node.get("gres_used") or "")),
                cpu_milli_free=max(cpus - alloc, 0) * 1000,
                state=self._node_state(str(state), [str(f) for f in node.get("state_flags") or []])))
        return sorted(out, key=lambda n: n.hostname)

    def _inventory_scontrol(self) -> list[Inventory]:
        done = self._run(["scontrol", "-o", "-d", "show", "node"])
        out = []
        for line in done.stdout.splitlines():
            fields = _key_values(line)
            if "NodeName" not in fields:
                continue
            partitions = fields.get("Partitions", "").split(",")
            if self.partition and self.partition not in partitions:
                continue
            cpus = int(fields.get("CPUTot") or 0)
            alloc = int(fields.get("CPUAlloc") or 0)
            out.append(Inventory(
                hostname=fields["NodeName"], cpu_milli=cpus * 1000, memory_mb=int(fields.get("RealMemory") or 0),
                devices=self._devices(fields.get("Gres", ""), fields.get("GresUsed", "")),
                cpu_milli_free=max(cpus - alloc, 0) * 1000, state=self._node_state(fields.get("State", ""), [])))
        return sorted(out, key=lambda n: n.hostname)

    def telemetry(self) -> list[dict[str, Any]]:
        return []

    # -- ids and the map
    def engine_id(self, job_id: int, attempt: int) -> str:
        return f"{PREFIX}{job_id}-{attempt}"

    def _dir(self, engine_id: str) -> Path:
        if not _ID_RE.match(engine_id):
            raise ValueError(f"not a Slurm engine id: {engine_id!r}")
        return self.work_dir / engine_id

    @property
    def _map_path(self) -> Path:
        return self.work_dir / "slurm-jobs.json"

    def _load_map(self) -> dict[str, str]:
        try:
            data = json.loads(self._map_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """WORK/.lock, held across look-up, sbatch and record (re-entrant within this object)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with open(self.work_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _record(self, engine_id: str, slurm_id: str) -> None:
        """Remember engine id -> Slurm id (under the lock; the map is replaced atomically)."""
        with self._lock():
            mapping = self._load_map()
            if mapping.get(engine_id) == slurm_id:
                return
            mapping[engine_id] = slurm_id
            tmp = self._map_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(mapping, indent=0, sort_keys=True))
            os.replace(tmp, self._map_path)
        root = self.work_dir / engine_id
        if root.is_dir():
            (root / "slurm_id").write_text(slurm_id)

    def _find(self, engine_id: str, *, strict: bool = False) -> str | None:
        """The Slurm id of the job this backend submitted for `engine_id`, asked of Slurm by name and
        working directory. `strict`: a command that fails raises rather than reading as "no such job"."""
        workdir = str(self.work_dir / engine_id)
        done = self._run(["squeue", "-h", "--me", "--name", engine_id, "-t", "all", "-o", "%i|%Z"], check=strict)
        for line in done.stdout.splitlines():
            slurm_id, _, wd = line.partition("|")
            if wd.strip() == workdir:
                return slurm_id.strip()
        done = self._run(["sacct", "-X", "-P", "-n", "--name", engine_id, "-S", "now-14days", "-E", "now",
                          "-u", _user(), "-o", "JobIDRaw,WorkDir"], check=False)
        if strict and done.returncode != 0 and "disabled" not in done.stderr:  # a site without accounting
            raise SlurmError(f"sacct cannot say whether {engine_id} was submitted: {done.stderr.strip()}")
        found = None
        for line in done.stdout.splitlines():
            slurm_id, _, wd = line.partition("|")
            if wd.strip() == workdir:
                found = slurm_id.strip()
        return found

    def _recorded(self, engine_id: str) -> str | None:
        known = self._load_map().get(engine_id)
        if known is None:
            with contextlib.suppress(FileNotFoundError):
                known = (self._dir(engine_id) / "slurm_id").read_text().strip() or None
        return known

    def _slurm_id(self, engine_id: str, *, strict: bool = False) -> str | None:
        """The recorded Slurm id, else one found in Slurm by name (and then recorded)."""
        known = self._recorded(engine_id)
        if known is None:
            known = self._find(engine_id, strict=strict)
            if known is not None:
                self._dir(engine_id).mkdir(parents=True, exist_ok=True)
                self._record(engine_id, known)
        return known

    # -- submit
    def _gres(self, run: RunRequest) -> str | None:
        per_node = run.devices_per_node
        if not per_node:
            return None
        if 0 < run.milli_per_device < 1000:
            share = run.milli_per_device / 1000
            raise SubmitRefused(f"Slurm hands out whole GPUs (GRES); this request holds {share:g} of a device "
                                "(gres/shard and MPS are not used by this backend)")
        models = {m for p in run.parts for m in p.device_models}
        if len(models) > 1:
            raise SubmitRefused(f"a Slurm job holds one accelerator model; this request mixes {sorted(models)}")
        model = run.device_model
        if model is None:
            return f"gpu:{per_node}"
        types = sorted(t for t, m in self.gres_models.items() if m == model)
        if not types:
            raise SubmitRefused(f"no Slurm GRES type maps to the catalog model {model} at this site "
                                f"(gres_models: {self.gres_models or 'empty'})")
        return f"gpu:{per_node}" if types[0] == "gpu" else f"gpu:{types[0]}:{per_node}"

    def _write_scripts(self, run: RunRequest, root: Path) -> Path:
        (root / "run.sh").write_text(run.run or "")
        ranks = "\n".join(f"    {shlex.quote(p.hostname)}) COMPUTEGRID_NODE_RANK={p.rank} ;;" for p in run.parts)
        workdir = str(Path(run.workdir).expanduser()) if run.workdir else str(root)
        own_log = ""
        if len(run.parts) > 1:  # each rank but the first keeps its own output (see `logs`)
            own_log = (f'if [ "$COMPUTEGRID_NODE_RANK" != {run.parts[0].rank} ]; then\n'
                       f'    exec >> {shlex.quote(str(root))}/output.rank-"$COMPUTEGRID_NODE_RANK".log 2>&1\n'
                       'fi\n')
        task = f"""#!/bin/bash
# One rank of computegrid job {run.job_id} attempt {run.attempt} (written by the Slurm backend).
case "${{SLURMD_NODENAME:-}}" in
{ranks}
    *) COMPUTEGRID_NODE_RANK="${{SLURM_NODEID:-0}}" ;;
esac
export COMPUTEGRID_NODE_RANK
{own_log}cg_node="${{SLURMD_NODENAME:-$(hostname -s)}}"
printf '%s\\n' "${{SLURM_STEP_GPUS:-${{SLURM_JOB_GPUS:-}}}}" > {shlex.quote(str(root))}/gpus."$cg_node"
cg_workdir={shlex.quote(workdir)}
if [ ! -d "$cg_workdir" ]; then
    echo "computegrid: workdir $cg_workdir does not exist on $cg_node" >&2
    exit 127
fi
cd "$cg_workdir" || exit 127
exec bash {shlex.quote(str(root / "run.sh"))}
"""
        (root / "task.sh").write_text(task)
        if len(run.parts) > 1:
            launch = (f"srun --nodes={len(run.parts)} --ntasks={len(run.parts)} --ntasks-per-node=1 "
                      f"--kill-on-bad-exit=1 bash {shlex.quote(str(root / 'task.sh'))}")
        else:
            launch = f"bash {shlex.quote(str(root / 'task.sh'))}"
        watchdog = root / "watchdog.sh"
        watchdog.write_text(watchdog_script(job_id=run.job_id, attempt=run.attempt, lease=self.lease_file,
                                            stopped=root / "stopped"))
        batch = root / "batch.sh"
        batch.write_text(batch_script(job_id=run.job_id, attempt=run.attempt, launch=launch, watchdog=watchdog))
        batch.chmod(0o755)
        return batch

    def _sbatch_args(self, run: RunRequest, engine_id: str, root: Path, batch: Path) -> list[str]:
        cpus = max(1, math.ceil(run.cpu_milli / 1000))
        args = ["sbatch", "--parsable", f"--job-name={engine_id}", f"--chdir={root}",
                f"--output={root / 'output.log'}", "--open-mode=append", "--no-requeue",
                f"--nodes={len(run.parts)}", f"--nodelist={','.join(p.hostname for p in run.parts)}",
                "--ntasks-per-node=1", f"--cpus-per-task={cpus}", f"--mem={max(1, int(run.memory_mb))}",
                f"--comment=computegrid job {run.job_id} attempt {run.attempt}", "--export=ALL"]
        gres = self._gres(run)
        if gres:
            args.append(f"--gres={gres}")
        if run.time_limit_s:
            args.append(f"--time={max(1, math.ceil(run.time_limit_s / 60))}")
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.account:
            args.append(f"--account={self.account}")
        args.append(str(batch))
        return args

    def submit(self, run: RunRequest) -> str:
        engine_id = self.engine_id(run.job_id, run.attempt)
        root = self._dir(engine_id)
        if run.run is None or run.image is not None:
            raise SubmitRefused("the Slurm backend runs commands, not container images: give `run`, "
                                "leave out `image`")
        if not run.parts:
            raise SubmitRefused("the request names no node of this site")
        claim = root / "claim"
        with self._lock():
            if self._recorded(engine_id) is not None:
                return engine_id  # submitted before (by this process or one before a restart): never twice
            # A claim without a record (a crash or time-out between sbatch and the record): ask Slurm, and
            # if it cannot answer, do not guess. No directory at all (new, or WORK was lost): ask too.
            claimed = claim.exists()
            if (claimed or not root.exists()) and self._slurm_id(engine_id, strict=claimed) is not None:
                return engine_id
            root.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.write(fd, f"{os.getpid()} {time.time():.3f}\n".encode())
                os.close(fd)
            except FileExistsError:
                # An earlier submit claimed it but Slurm has no such job (sbatch was refused or never ran).
                log.info("%s was claimed before but Slurm has no job for it; submitting now", engine_id)
            batch = self._write_scripts(run, root)
            env = self._env()
            env.update(run.envs)
            env.update({"COMPUTEGRID_JOB_ID": str(run.job_id), "COMPUTEGRID_ATTEMPT": str(run.attempt),
                        "COMPUTEGRID_NUM_NODES": str(run.nodes)})
            env.pop("SLURM_TIME_FORMAT", None)
            args = self._sbatch_args(run, engine_id, root, batch)
            (root / "request.json").write_text(json.dumps({"request": asdict(run), "sbatch": args}, indent=1))
            done = self._run(args, env=env, check=False)
            if done.returncode != 0:
                message = done.stderr.strip() or done.stdout.strip() or f"sbatch exited {done.returncode}"
                message = message.replace("sbatch: error: ", "")
                if any(t in message.lower() for t in _TRANSIENT):
                    raise SlurmError(f"sbatch failed, will retry: {message}")
                claim.unlink(missing_ok=True)
                raise SubmitRefused(f"Slurm refused the job: {message}")
            slurm_id = done.stdout.strip().split(";")[0]
            if not slurm_id.isdigit():
                raise SlurmError(f"sbatch printed no job id: {done.stdout!r} {done.stderr!r}")
            self._record(engine_id, slurm_id)
        log.info("submitted %s as Slurm job %s", engine_id, slurm_id)
        return engine_id

    # -- reading a job
    def _scontrol_job(self, slurm_id: str) -> SlurmJob | None:
        done = self._run(["scontrol", "-o", "-d", "show", "job", slurm_id], check=False)
        if done.returncode != 0:
            if "invalid job id" in done.stderr.lower():
                return None
            raise SlurmError(f"scontrol show job {slurm_id}: {done.stderr.strip()}")
        line = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
        fields = _key_values(line)
        if fields.get("JobId") != slurm_id:
            return None
        self._remember_gpus(slurm_id, line)
        return SlurmJob(job_id=slurm_id, name=fields.get("JobName", ""), state=fields.get("JobState", ""),
                        reason=fields.get("Reason", ""), exit_code=_exit_code(fields.get("ExitCode")),
                        start_s=_epoch(fields.get("StartTime")), end_s=_epoch(fields.get("EndTime")),
                        nodes=tuple(expand_hostlist(fields.get("NodeList", ""))), tres=_tres(fields.get("TRES")),
                        workdir=fields.get("WorkDir", ""))

    def _sacct_job(self, slurm_id: str) -> SlurmJob | None:
        done = self._run(["sacct", "-X", "-P", "-n", "-j", slurm_id, "-o",
                          "JobIDRaw,JobName,State,Reason,ExitCode,Start,End,NodeList,AllocTRES,WorkDir"],
                         check=False)
        rows = [line.split("|") for line in done.stdout.splitlines() if line.count("|") >= 9]
        rows = [r for r in rows if r[0] == slurm_id]
        if not rows:
            return None
        r = rows[-1]
        return SlurmJob(job_id=slurm_id, name=r[1], state=r[2].split()[0] if r[2] else "", reason=r[3],
                        exit_code=_exit_code(r[4]), start_s=_epoch(r[5]), end_s=_epoch(r[6]),
                        nodes=tuple(expand_hostlist(r[7])), tres=_tres(r[8]), workdir=r[9])

    def _job(self, slurm_id: str, *, accounting_first: bool = False) -> SlurmJob | None:
        if accounting_first:
            found = self._sacct_job(slurm_id)
            if found is not None and found.state not in _ACTIVE:
                return found
            return self._scontrol_job(slurm_id) or found
        return self._scontrol_job(slurm_id) or self._sacct_job(slurm_id)

    def _remember_gpus(self, slurm_id: str, line: str) -> None:
        """Keep the GPU indices per node (`Nodes=vm ... GRES=gpu:a100:2(IDX:0-1)`) past the job's end."""
        if "IDX:" not in line:
            return
        name = _key_values(line).get("JobName", "")
        if not _ID_RE.match(name):
            return
        root = self.work_dir / name
        if not root.is_dir() or (root / "gpus.json").exists():
            return
        found: dict[str, list[int]] = {}
        for nodes, gres in re.findall(r"Nodes=(\S+) CPU_IDs=\S+ Mem=\S+ GRES=(\S*)", line):
            indices = sorted(i for _n, _t, _c, idx in parse_gres(gres) for i in (idx or []))
            for host in expand_hostlist(nodes):
                found[host] = indices
        if found:
            tmp = root / f"gpus.json.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(found))
            os.replace(tmp, root / "gpus.json")

    # -- status, cancel, logs
    def status(self, engine_id: str) -> ExecStatus:
        slurm_id = self._slurm_id(engine_id)
        if slurm_id is None:
            return ExecStatus(EngineState.UNKNOWN)
        job = self._job(slurm_id)
        if job is None:
            return ExecStatus(EngineState.UNKNOWN, reason=f"Slurm no longer knows job {slurm_id}")
        started = job.start_s * 1000 if job.start_s else None
        state = job.state.split("+")[0].upper()
        if state in _QUEUED:
            reason = job.reason if job.reason and job.reason != "None" else "waiting in Slurm's queue"
            return ExecStatus(EngineState.QUEUED, reason=f"Slurm job {slurm_id} is {state}: {reason}")
        if state in _RUNNING:
            return ExecStatus(EngineState.RUNNING, started_ms=started, reason=f"Slurm job {slurm_id} is {state}")
        ended = job.end_s * 1000 if job.end_s else None
        if started is not None and ended is not None and ended < started:
            ended = started
        detail = f"Slurm job {slurm_id} {state}"
        if job.exit_code is not None:
            detail += f" (exit code {job.exit_code})"
        if job.reason and job.reason not in ("None", "NonZeroExitCode"):
            detail += f": {job.reason}"
        stopped = _read_text(self._dir(engine_id) / "stopped")
        if stopped:  # its watchdog ended it (slurm_lease.py): not the job's failure
            return ExecStatus(EngineState.CANCELLED, job.exit_code, started, ended, f"{detail}; stopped: {stopped}",
                              lost=True)
        if state == "COMPLETED":
            return ExecStatus(EngineState.SUCCEEDED, job.exit_code or 0, started, ended, detail)
        if state in _CANCELLED:
            return ExecStatus(EngineState.CANCELLED, job.exit_code, started, ended, detail)
        if state in _FAILED:
            return ExecStatus(EngineState.FAILED, job.exit_code or None, started, ended, detail)
        return ExecStatus(EngineState.FAILED, job.exit_code, started, ended, f"{detail} (an unknown Slurm state)")

    def cancel(self, engine_id: str) -> None:
        slurm_id = self._slurm_id(engine_id)
        if slurm_id is None:
            return
        done = self._run(["scancel", slurm_id], check=False)
        if done.returncode != 0 and "invalid job id" not in done.stderr.lower() \
                and "already completing or completed" not in done.stderr.lower():
            raise SlurmError(f"scancel {slurm_id}: {done.stderr.strip()}")

    def logs(self, engine_id: str, offset: int, rank: int | None = None) -> LogRead:
        """Rank `rank`'s output: the first part's is the job's output file (where Slurm writes its own
        messages too); each other rank of a gang writes `output.rank-<R>.log` (see task.sh)."""
        root = self._dir(engine_id)
        if rank is not None and rank != self._first_rank(root):
            return read_log_file(root / f"output.rank-{rank}.log", offset)
        return read_log_file(root / "output.log", offset)

    @staticmethod
    def _first_rank(root: Path) -> int | None:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError, IndexError, ValueError):
            return int(json.loads((root / "request.json").read_text())["request"]["parts"][0]["rank"])
        return None

    @property
    def lease_file(self) -> Path:
        """`<term_ms> <kill_ms>`: when this agent's Slurm jobs stop unless it renews it (slurm_lease.py)."""
        return self.work_dir / "lease"

    def renew_lease(self, term_ms: int, kill_ms: int) -> None:
        """Rewrite the lease that each job's watchdog reads (a new file renamed over the old, so a reader on
        the shared filesystem sees the old lease or the new one, never half of one)."""
        tmp = self.work_dir / f"lease.{os.getpid()}.tmp"
        tmp.write_text(f"{term_ms} {kill_ms}\n")
        os.replace(tmp, self.lease_file)

    # -- usage
    def _gpu_indices(self, root: Path, host: str, count: int, fallback: list[int]) -> list[int]:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            found = json.loads((root / "gpus.json").read_text()).get(host)
            if found and len(found) == count:
                return [int(i) for i in found]
        with contextlib.suppress(FileNotFoundError, ValueError):
            found = _index_list((root / f"gpus.{host}").read_text().strip())
            if len(found) == count:
                return found
        if len(fallback) == count:
            return fallback
        return list(range(count))

    def usage(self, engine_id: str) -> list[UsageSlice]:
        slurm_id = self._slurm_id(engine_id)
        if slurm_id is None:
            return []
        job = self._job(slurm_id, accounting_first=True)
        if job is None or job.start_s is None or not job.nodes:
            return []
        state = job.state.split("+")[0].upper()
        if state == "PENDING":
            return []
        start = job.start_s * 1000
        now = time.time_ns() // 1_000_000
        end = job.end_s * 1000 if job.end_s and state not in _RUNNING else now
        end = max(end, start)
        root = self._dir(engine_id)
        request: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            request = json.loads((root / "request.json").read_text()).get("request", {})
        requested = {str(p["hostname"]): [int(i) for i in p.get("device_indices", [])]
                     for p in request.get("parts", [])}
        nodes = list(job.nodes)
        cpus_total = int(job.tres.get("cpu", "0") or 0)
        cpu_per_node = cpus_total // len(nodes) if cpus_total else 0
        gpu_typed = [(k.split(":", 1)[1], int(v)) for k, v in job.tres.items() if k.startswith("gres/gpu:")]
        gpus_total = int(job.tres.get("gres/gpu", "0") or 0) or sum(n for _t, n in gpu_typed)
        gres_type = gpu_typed[0][0] if len(gpu_typed) == 1 else None
        model = self.gres_models.get(gres_type or "gpu") or _request_model(request)
        slices = []
        for host in nodes:
            slices.append(UsageSlice(-1, None, 0, cpu_per_node * 1000, start, end, hostname=host))
            count = gpus_total // len(nodes)
            for index in self._gpu_indices(root, host, count, requested.get(host, [])):
                slices.append(UsageSlice(index, model, 1000, 0, start, end, hostname=host))
        return slices

    def active_ids(self) -> list[str]:
        """Our attempts (name cg-*, working directory in WORK) that Slurm has queued or running."""
        done = self._run(["squeue", "-h", "--me", "-o", "%i|%j|%T|%Z"])
        out = []
        for line in done.stdout.splitlines():
            fields = line.split("|")
            if len(fields) < 4:
                continue
            _slurm_id, name, state, workdir = fields[0], fields[1], fields[2], "|".join(fields[3:])
            if _ID_RE.match(name) and state.upper() in _ACTIVE and workdir == str(self.work_dir / name):
                out.append(name)
        return sorted(set(out))


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _request_model(request: dict[str, Any]) -> str | None:
    models = {m for p in request.get("parts", []) for m in p.get("device_models", []) if m}
    return next(iter(models)) if len(models) == 1 else None


def _key_values(line: str) -> dict[str, str]:
    """`scontrol -o` output: Key=Value pairs separated by spaces (values have no spaces, bar a few)."""
    out: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep and key not in out:
            out[key] = value
    return out


def load_mapping(path: str | Path) -> dict[str, Any]:
    """The site mapping file: YAML with partition, account, gres_models (and slurm_conf, bin_dir)."""
    try:
        data = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SlurmOptionError(f"cannot read the Slurm mapping file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SlurmOptionError(f"{path}: the Slurm mapping file must be a mapping of {sorted(_MAPPING_KEYS)}")
    unknown = set(data) - _MAPPING_KEYS
    if unknown:
        raise SlurmOptionError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(_MAPPING_KEYS)}")
    return data


def create(**options: Any) -> SlurmBackend:
    """The backend from keyword options (`--backend-config` YAML) and, under them, a `mapping_file`."""
    if options.pop("declared", None):
        raise SlurmOptionError("the Slurm backend inventories devices from Slurm's GRES; declared devices "
                               "(a site file) do not apply: map GRES types with gres_models instead")
    mapping_file = options.pop("mapping_file", None)
    settings: dict[str, Any] = load_mapping(mapping_file) if mapping_file else {}
    settings.update({k: v for k, v in options.items() if v is not None})
    known = _MAPPING_KEYS | {"work_dir"}
    unknown = set(settings) - known
    if unknown:
        raise SlurmOptionError(f"unknown Slurm backend options {sorted(unknown)}; "
                               f"known: {sorted(known | {'mapping_file'})}")
    if "work_dir" not in settings:
        raise SlurmOptionError("the Slurm backend needs work_dir (where job scripts and output live)")
    models = settings.get("gres_models") or {}
    if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
        raise SlurmOptionError("gres_models must map GRES types to catalog models, e.g. {a100: A100-80G}")
    return SlurmBackend(**settings)
