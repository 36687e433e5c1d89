"""The catalog file on disk: read it (``load_catalog_file``) and install it in the data dir.

The server reads ``DATA_DIR/catalog.json`` at start and on change; ``omflow catalog load``
checks a file and installs it there. Parsing and checking are sans-I/O in
``omflow.core.catalogfile``; this module only reads and writes the file.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from omflow.core.catalogfile import CatalogFile, CatalogFileError, parse_catalog_file

CATALOG_FILENAME = "catalog.json"


def load_catalog_file(path: Path) -> CatalogFile:
    """Read and check a catalog file; ``CatalogFileError`` names the field (or the file)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CatalogFileError(f"cannot read {path}: {error.strerror or error}") from None
    return parse_catalog_file(raw)


def install_catalog_file(source: Path, data_dir: Path) -> tuple[Path, CatalogFile]:
    """Check ``source`` and put it at ``DATA_DIR/catalog.json`` atomically (a rename)."""
    catalog = load_catalog_file(source)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=data_dir, delete=False, suffix=".tmp") as tmp:
        tmp.write(source.read_bytes())
    target = data_dir / CATALOG_FILENAME
    Path(tmp.name).replace(target)
    return target, catalog


def sample_catalog_path() -> Path:
    """The catalog shipped with omflow (``omflow/feeds/samples/catalog.json``)."""
    return Path(str(resources.files("omflow.feeds") / "samples" / CATALOG_FILENAME))
