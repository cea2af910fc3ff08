"""`--backend` and `--backend-config`: a bad name, file or option is a clear error, and nothing starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from computegrid.agent.backend_config import BackendConfigError, make_backend
from computegrid.backends.local import LocalBackend


def test_local_backend_from_config_and_site_file(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("devices: [{model: A100-80G, count: 2}]\n")
    config = tmp_path / "local.yaml"
    config.write_text("hostname: gpu-7\n")
    backend = make_backend("local", work_dir=tmp_path / "w", config_file=config, site_file=site)
    assert isinstance(backend, LocalBackend)
    (node,) = backend.inventory()
    assert node.hostname == "gpu-7" and [d.model for d in node.devices][-2:] == ["A100-80G"] * 2


@pytest.mark.parametrize(("name", "config", "message"), [
    ("nope", None, "unknown backend 'nope'; known: local, slurm, ray, kubernetes"),
    ("local", "[1, 2]", "expected a mapping of option names to values"),
    ("local", "a: [unclosed", "cannot read backend config"),
    ("local", "colour: blue\n", "bad option for the local backend"),
    ("local", "work_dir: /elsewhere\n", "work_dir comes from"),
])
def test_bad_backend_settings_are_named(tmp_path: Path, name: str, config: str | None, message: str) -> None:
    path = None
    if config is not None:
        path = tmp_path / "engine.yaml"
        path.write_text(config)
    with pytest.raises(BackendConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        make_backend(name, work_dir=tmp_path / "w", config_file=path)
    assert not (tmp_path / "w").exists()


def test_site_file_is_for_the_local_backend_only(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("devices: [{model: A100-80G}]\n")
    with pytest.raises(BackendConfigError, match="local backend only"):
        make_backend("slurm", work_dir=tmp_path / "w", site_file=site)


def test_agent_cli_reports_a_bad_backend_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "computegrid", "agent", "--site", "s", "--backend", "pbs",
                             "--work-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown backend 'pbs'" in result.stderr and "Traceback" not in result.stderr
