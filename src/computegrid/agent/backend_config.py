"""Make the backend an agent drives from its name and an optional YAML file of engine options.

`--backend-config slurm.yaml` holding `{partition: gpu, gres_models: {a100: A100-80G}}` becomes
`get_backend("slurm", work_dir=..., partition="gpu", gres_models={...})`. Each backend documents its
options in docs/backends/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from computegrid.agent.site_file import SiteFileError, load_declared_devices
from computegrid.backends import Backend, get_backend, known_backends


class BackendConfigError(ValueError):
    pass


def read_backend_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BackendConfigError(f"cannot read backend config {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise BackendConfigError(f"{path}: expected a mapping of option names to values")
    return data


def make_backend(name: str, *, work_dir: Path, config_file: Path | None = None,
                 site_file: Path | None = None) -> Backend:
    """The named backend with its options; a bad name, file or option is a BackendConfigError."""
    if name not in known_backends():
        raise BackendConfigError(f"unknown backend {name!r}; known: {', '.join(known_backends())}")
    options = read_backend_config(config_file)
    if "work_dir" in options:
        raise BackendConfigError("work_dir comes from --work-dir / --state-dir, not the backend config")
    if site_file is not None:
        if name != "local":
            raise BackendConfigError("--site-file declares devices for the local backend only; "
                                     f"the {name} engine reports its own")
        try:
            options["declared"] = load_declared_devices(site_file)
        except SiteFileError as exc:
            raise BackendConfigError(str(exc)) from exc
    try:
        return get_backend(name, work_dir=work_dir, **options)
    except ImportError as exc:
        raise BackendConfigError(f"the {name} backend needs its extra: pip install 'computegrid[{name}]' "
                                 f"({exc})") from exc
    except TypeError as exc:
        raise BackendConfigError(f"bad option for the {name} backend: {exc}") from exc
