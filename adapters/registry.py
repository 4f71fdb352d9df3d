"""Adapters kept side by side as `root/<name>/`, found by name; each folder's card.json describes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.lora import CARD_FILE, read_card
from suggest.errors import ArtifactError

__all__ = ["list_adapters", "resolve", "load_encoder"]


def list_adapters(root: Path | str) -> dict[str, dict[str, Any]]:
    """name → card, for every adapter folder under `root` (sorted by name; a missing root is empty)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {d.name: read_card(d) for d in sorted(root.iterdir()) if (d / CARD_FILE).exists()}


def resolve(root: Path | str, name: str) -> Path:
    """The folder of adapter `name` under `root`."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ArtifactError(f"adapter name must be a plain folder name, got {name!r}")
    path = Path(root) / name
    if not (path / CARD_FILE).exists():
        known = ", ".join(list_adapters(root)) or "none"
        raise ArtifactError(f"no adapter {name!r} under {root} (known: {known})")
    return path


def load_encoder(adapter: str | None, root: Path | str = "artifacts/adapters") -> tuple:
    """(embed, description) of the base encoder (adapter None) or of an adapter, by name under `root`
    or by folder; the description ({"name", "path"}) is what artifacts and rankers record."""
    from adapters.encoder import Encoder  # torch only when an encoder is asked for

    if adapter is None:
        return Encoder.base().encode, {"name": "base", "path": None}
    path = Path(adapter) if Path(adapter).is_dir() else resolve(root, adapter)
    return Encoder.load(path).encode, {"name": path.name, "path": str(path.resolve())}
