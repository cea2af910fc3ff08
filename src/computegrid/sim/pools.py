"""Pools for the simulator, built from real inventories, and the rule that spreads nodes over sites.

Inventories (see ../shared/data/SOURCES.md):
- `alibaba-spot`: node_info_df.csv, 4,278 nodes with 10,412 GPUs (columns gpu_model, gpu_capacity_num,
  cpu_num, node_name). Named models map onto catalog models (`ALIBABA_SPOT_MODELS`). The trace
  anonymises two models as `GPU-series-1` and `GPU-series-2`; they are kept as OPAQUE models with unknown
  FP16, so they hold jobs like any GPU but meter no du (usage reports their device-hours apart). Their
  shapes (1, 4 or 8 GPUs with 128-192 cores) fit several real servers equally well, and guessing a
  model would put an invented FP16 rating into every du figure. The inventory gives no memory: nodes get
  0 MiB, and device memory is the catalog's (0 GB for the opaque models).
- `openb`: openb_node_list_gpu_node.csv, 1,213 GPU nodes with 6,212 GPUs (columns sn, cpu_milli,
  memory_mib, gpu, model). Names resolve through catalog aliases (P100 -> P100-16G, V100M16 -> V100-16G,
  V100M32 -> V100-32G); `G2` and `G3` are unnamed in the trace and stay opaque.
- any CSV in either format (chosen by its header).

Site rule (`spread_over_sites`), deterministic, in inventory order:
1. Tier by node shape: nodes with 8 or more devices are training servers and go to `hub` sites (batch
   work on cheap power); small nodes, with 1 or 2 devices, are inference boxes: every 4th of them (the
   4th, 8th, ... small node in inventory order) goes to an `edge` site, the rest to `core`; nodes with
   3-7 devices, and nodes without devices, go to `core`.
2. Within a tier, nodes are dealt round-robin over that tier's sites, in inventory order. Hub sites
   are one per hub region, and the four western hubs (inner-mongolia, guizhou, gansu, ningxia) get two
   turns per round to the eastern hubs' one, as the plan moves batch computing west. Core and edge sites
   are one per core and edge city of data/regions.csv, one turn each. So every region gets a site as
   soon as each tier has at least as many nodes as sites (both named pools do).
A site is named `<tier>-<region>` and takes its region's electricity price.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from computegrid.core.catalog import Catalog, UnknownAccelerator, default_catalog
from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot
from computegrid.sim.regions import Region, default_regions

#: alibaba-spot model names -> catalog models (the GPU-series-N models stay opaque, see the docstring)
ALIBABA_SPOT_MODELS = {"A100-SXM4-80GB": "A100-80G", "A800-SXM4-80GB": "A800-80G", "H800": "H800-80G", "A10": "A10"}
ALIBABA_SPOT_COLUMNS: tuple[str, ...] = ("gpu_model", "gpu_capacity_num", "cpu_num", "node_name")
OPENB_COLUMNS: tuple[str, ...] = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
WESTERN_HUBS = ("inner-mongolia", "guizhou", "gansu", "ningxia")
#: nodes with at most this many devices are small (inference boxes); every EDGE_EVERY-th of them is edge
SMALL_NODE_DEVICES = 2
EDGE_EVERY = 4
DATA_ENV = "COMPUTEGRID_SHARED_DATA"


class PoolError(ValueError):
    """An inventory that cannot be read: names the file, and the line and column when one is at fault."""


@dataclass(frozen=True)
class PoolNode:
    """One inventory node: name, CPU (milli), memory (MiB), device count, catalog or opaque model, device GB."""

    name: str
    cpu_milli: int
    memory_mb: int
    devices: int
    model: str
    device_memory_gb: float


@dataclass(frozen=True)
class Site:
    """A simulated site: name, region, tier and electricity price (fen/kWh, from its region)."""

    name: str
    region: str
    tier: str
    electricity_fen_per_kwh: float


@dataclass
class SimPool:
    """A pool for the simulator: the core snapshot, its nodes (row order) and their sites."""

    name: str
    source: str
    snapshot: PoolSnapshot
    nodes: list[PoolNode]
    sites: list[Site]
    node_site: list[Site]
    opaque_models: tuple[str, ...]

    @property
    def devices(self) -> int:
        return sum(n.devices for n in self.nodes)


def find_data_dir(given: Path | None = None) -> Path:
    """The shared data folder (holding philly/, openb/, alibaba-spot/): `given`, else $COMPUTEGRID_SHARED_DATA,
    else ../shared/data from the working directory, else ../shared/data beside the repository.
    Raises PoolError naming where it looked."""
    here = Path(__file__).resolve()
    candidates = [given] if given is not None else [
        *([Path(os.environ[DATA_ENV])] if os.environ.get(DATA_ENV) else []),
        Path.cwd().parent / "shared" / "data",
        here.parents[4] / "shared" / "data" if len(here.parents) > 4 else here.parent,
    ]
    for path in candidates:
        if path is not None and path.is_dir():
            return path
    raise PoolError(f"the shared data folder was not found (looked in {', '.join(str(p) for p in candidates)}); "
                    f"pass --data-dir or set {DATA_ENV}")


def resolve_model(name: str, catalog: Catalog) -> tuple[str, float, bool]:
    """(model, device memory GB, known) for an inventory model name: the catalog's canonical name when the
    name or an alias is in the catalog, else the name itself as an opaque model with 0 GB."""
    try:
        entry = catalog.get(name)
    except UnknownAccelerator:
        return name, 0.0, False
    return entry.model, float(entry.memory_gb or 0), True  # unknown memory: 0 GB, meets no minimum


def _int(row: list[str], index: int, column: str, path: Path, line: int, *, minimum: int = 0) -> int:
    text = row[index].strip()
    try:
        value = int(text)
    except ValueError:
        raise PoolError(f"{path}:{line}: column {column!r}: {text!r} is not a whole number") from None
    if value < minimum:
        raise PoolError(f"{path}:{line}: column {column!r}: {value} is below {minimum}")
    return value


def read_inventory(path: Path, catalog: Catalog | None = None) -> list[PoolNode]:
    """Nodes of an openb node list or an alibaba-spot node_info CSV (told apart by the header).

    Raises PoolError naming the file, line and column of a bad cell.
    """
    catalog = catalog or default_catalog()
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise PoolError(f"{path}: cannot read the node list ({exc.strerror or exc})") from None
    nodes: list[PoolNode] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise PoolError(f"{path}: the file is empty (want a header {','.join(OPENB_COLUMNS)})") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise PoolError(f"{path}:1: not a CSV file ({exc})") from None
        if all(c in header for c in ALIBABA_SPOT_COLUMNS):
            columns, alibaba = ALIBABA_SPOT_COLUMNS, True
        elif all(c in header for c in OPENB_COLUMNS):
            columns, alibaba = OPENB_COLUMNS, False
        else:
            raise PoolError(f"{path}:1: not a node list: want the openb columns {','.join(OPENB_COLUMNS)} "
                            f"(or alibaba-spot's {','.join(ALIBABA_SPOT_COLUMNS)}); got {','.join(header)}")
        at = {c: header.index(c) for c in columns}
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise PoolError(f"{path}:{line}: {len(row)} columns, the header has {len(header)}")
                if alibaba:
                    devices = _int(row, at["gpu_capacity_num"], "gpu_capacity_num", path, line)
                    cpu = _int(row, at["cpu_num"], "cpu_num", path, line) * 1000
                    memory, name = 0, row[at["node_name"]].strip()
                    raw = row[at["gpu_model"]].strip()
                    raw = ALIBABA_SPOT_MODELS.get(raw, raw)
                else:
                    cpu = _int(row, at["cpu_milli"], "cpu_milli", path, line)
                    memory = _int(row, at["memory_mib"], "memory_mib", path, line)
                    devices = _int(row, at["gpu"], "gpu", path, line)
                    name, raw = row[at["sn"]].strip(), row[at["model"]].strip()
                if devices and not raw:
                    raise PoolError(f"{path}:{line}: column {'gpu_model' if alibaba else 'model'!r}: "
                                    f"a node with {devices} devices names no model")
                model, gb, _ = resolve_model(raw, catalog) if devices else ("", 0.0, True)
                nodes.append(PoolNode(name=name or f"node-{len(nodes)}", cpu_milli=cpu, memory_mb=memory,
                                      devices=devices, model=model, device_memory_gb=gb))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise PoolError(f"{path}:{reader.line_num}: not a CSV row ({exc})") from None
    if not any(n.devices for n in nodes):
        raise PoolError(f"{path}: the node list has no device ({len(nodes)} nodes)")
    return nodes


def is_small(devices: int) -> bool:
    """Whether a node is a small inference box (1 or 2 devices)."""
    return 0 < devices <= SMALL_NODE_DEVICES


def tier_of(devices: int, small_index: int) -> str:
    """The tier of a node with `devices` devices; `small_index` counts the small nodes before it."""
    if devices >= 8:
        return "hub"
    if is_small(devices) and small_index % EDGE_EVERY == EDGE_EVERY - 1:
        return "edge"
    return "core"


def tier_sites(regions: Sequence[Region]) -> dict[str, list[Site]]:
    """The dealing order of sites per tier (see the module docstring): western hubs appear twice per round."""
    def site(r: Region) -> Site:
        return Site(f"{r.tier}-{r.name}", r.name, r.tier, r.electricity_fen_per_kwh)

    hubs = [r for r in regions if r.tier == "hub"]
    order = {"hub": [site(r) for r in hubs] + [site(r) for r in hubs if r.name in WESTERN_HUBS]}
    for tier in ("core", "edge"):
        order[tier] = [site(r) for r in regions if r.tier == tier]
    return order


def spread_over_sites(nodes: Sequence[PoolNode], regions: Sequence[Region] | None = None) -> list[Site]:
    """The site of each node (same order), by the module docstring's rule; deterministic."""
    order = tier_sites(regions if regions is not None else default_regions())
    for tier, sites in order.items():
        if not sites:
            raise ValueError(f"no region of tier {tier!r} to place sites in")
    dealt = dict.fromkeys(order, 0)
    small = 0
    out = []
    for node in nodes:
        tier = tier_of(node.devices, small)
        if is_small(node.devices):
            small += 1
        sites = order[tier]
        out.append(sites[dealt[tier] % len(sites)])
        dealt[tier] += 1
    return out


def build_pool(name: str, source: str, nodes: Sequence[PoolNode], regions: Sequence[Region] | None = None,
               catalog: Catalog | None = None) -> SimPool:
    """A SimPool of `nodes` (node_id = position, all up), spread over sites by `spread_over_sites`."""
    catalog = catalog or default_catalog()
    node_site = spread_over_sites(nodes, regions)
    infos = [NodeInfo(node_id=i, site=s.name, region=s.region, tier=s.tier, up=True, cpu_milli=n.cpu_milli,
                      memory_mb=n.memory_mb) for i, (n, s) in enumerate(zip(nodes, node_site, strict=True))]
    devices = [DeviceInfo(node_id=i, index=k, model=n.model, memory_gb=n.device_memory_gb)
               for i, n in enumerate(nodes) for k in range(n.devices)]
    opaque = sorted({n.model for n in nodes if n.devices and not resolve_model(n.model, catalog)[2]})
    sites = sorted(set(node_site), key=lambda s: s.name)
    return SimPool(name=name, source=source, snapshot=PoolSnapshot(infos, devices), nodes=list(nodes),
                   sites=sites, node_site=node_site, opaque_models=tuple(opaque))


def load_pool(spec: str, data_dir: Path | None = None) -> SimPool:
    """`alibaba-spot`, `openb` (GPU nodes) or a path to a node-list CSV; raises PoolError."""
    if spec == "alibaba-spot":
        path = find_data_dir(data_dir) / "alibaba-spot" / "node_info_df.csv"
    elif spec == "openb":
        path = find_data_dir(data_dir) / "openb" / "openb_node_list_gpu_node.csv"
    else:
        path = Path(spec)
        if not path.is_file():
            raise PoolError(f"{path}: no such node list (give openb, alibaba-spot or a CSV with columns "
                            f"{','.join(OPENB_COLUMNS)})")
    return build_pool(spec if spec in ("alibaba-spot", "openb") else path.stem, str(path), read_inventory(path))
