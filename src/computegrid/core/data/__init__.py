"""Static data shipped with the package; each file names the sources of its figures."""

from importlib import resources


def packaged_text(name: str) -> str:
    """The text of a data file in this package (static, so reading it keeps core deterministic)."""
    return resources.files(__name__).joinpath(name).read_text("utf-8")
