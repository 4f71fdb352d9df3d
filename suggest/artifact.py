"""Index artifacts: build atomically, describe in manifest.json, verify before serving.

    ARTIFACT/
      manifest.json     format version, counts, source checksums, build time, file checksums
      phrases/          the phrase table every source points into
      prefix/ infix/ typo/ zero/   one folder per candidate source
      vector/           embedding recall, when built with an encoder (manifest "encoder" says which)
      lexical/          BM25 product retrieval for search
      catalog.json      product names and brands, sponsored campaigns: what responses and the policy layer show
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from indexes.base import CandidateSource
from indexes.fuzzy import TypoSource
from indexes.lexical import LexicalIndex
from indexes.phrases import PhraseTable, mine_phrases
from indexes.prefix import InfixSource, PrefixSource
from indexes.vector import Embed, VectorSource
from indexes.zero import ZeroPrefixSource
from suggest.errors import ArtifactError
from suggest.loaders import sha256_file
from suggest.types import Campaign, Dataset

__all__ = ["Artifact", "ArtifactCatalog", "build_artifact", "load_artifact", "FORMAT_VERSION", "SOURCES"]

FORMAT_VERSION = 2  # 2: catalog.json
SOURCES: tuple[type, ...] = (PrefixSource, InfixSource, TypoSource, ZeroPrefixSource)


@dataclass(frozen=True)
class ArtifactCatalog:
    """What the response and the policy layer need to know about products, keyed by product id."""

    names: dict[int, str]
    brands: dict[int, str | None]
    campaigns: tuple[Campaign, ...] = ()

    @classmethod
    def from_dataset(cls, data: Dataset) -> "ArtifactCatalog":
        products = data.catalog.products
        return cls({p.product_id: p.name for p in products}, {p.product_id: p.brand for p in products},
                   tuple(data.campaigns))

    def to_json(self) -> dict:
        return {"products": [[pid, name, self.brands.get(pid)] for pid, name in self.names.items()],
                "campaigns": [[c.campaign_id, c.brand, c.bid, c.budget] for c in self.campaigns]}

    @classmethod
    def from_json(cls, doc: dict) -> "ArtifactCatalog":
        return cls({int(pid): name for pid, name, _ in doc["products"]},
                   {int(pid): brand for pid, _, brand in doc["products"]},
                   tuple(Campaign(str(i), str(b), float(bid), float(budget)) for i, b, bid, budget in doc["campaigns"]))


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict
    table: PhraseTable
    sources: tuple[CandidateSource, ...]
    lexical: LexicalIndex | None = None  # product retrieval for search; load_artifact always sets it
    catalog: ArtifactCatalog | None = None  # load_artifact always sets it

    @property
    def id(self) -> str:
        return self.manifest["id"]


def _file_checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def build_artifact(data: Dataset, out: Path | str, progress: bool = True, embed: Embed | None = None,
                   encoder: dict | None = None) -> Path:
    """Build every source into a temporary folder beside `out`, then swap it in.

    With `embed` (and `encoder`, a description of it: name, adapter path) the artifact also gets
    embedding recall over phrases and products."""
    sources = SOURCES + ((VectorSource,) if embed is not None else ())
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.time()
    steps = tqdm(total=2 + len(sources), desc="build", unit="step", disable=not progress, file=sys.stderr)
    try:
        steps.set_postfix_str("phrases")
        table = mine_phrases(data)
        table.save(tmp / "phrases")
        steps.update()
        counts = {"products": len(data.catalog), "orders": len(data.orders), "queries": len(data.query_log),
                  "phrases": len(table)}
        for cls in sources:
            steps.set_postfix_str(cls.name)
            source = (cls.build(table, data, embed, encoder, progress=progress) if cls is VectorSource
                      else cls.build(table, data))
            source.save(tmp / cls.name)
            counts[cls.name] = len(source)
            steps.update()
        steps.set_postfix_str(LexicalIndex.name)
        lexical = LexicalIndex.build(data)
        lexical.save(tmp / lexical.name)
        counts[lexical.name] = len(lexical)
        (tmp / "catalog.json").write_text(json.dumps(ArtifactCatalog.from_dataset(data).to_json()))
        steps.update()
        files = _file_checksums(tmp)
        manifest = {
            "format_version": FORMAT_VERSION,
            "id": f"{out.name}@{hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]}",
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.time() - started, 2),
            "data": {"name": data.name, "checksums": data.checksums},
            "counts": counts,
            "sources": [cls.name for cls in sources],
            "encoder": encoder if embed is not None else None,
            "departments": {str(k): v for k, v in sorted(data.catalog.departments.items())},
            "aisles": {str(k): v for k, v in sorted(data.catalog.aisles.items())},
            "stores": sorted(data.out_of_stock),
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))  # written last: marks completion
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        steps.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_manifest(path: Path | str) -> dict:
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise ArtifactError(f"{path} is not an artifact (no manifest.json); build one with `keystroke build`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{manifest_path} is corrupt ({e}); rebuild the artifact") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format version {manifest.get('format_version')!r}, this Keystroke reads "
                            f"version {FORMAT_VERSION}; rebuild it with `keystroke build`")
    return manifest


def load_artifact(path: Path | str, verify: bool = True, embed: Embed | None = None,
                  adapter: str | None = None) -> Artifact:
    """Load an artifact, refusing one that is incomplete, corrupt or of another format version.

    An artifact with embedding recall needs the encoder its vectors came from: `embed`, or else the
    one its manifest names is loaded. `adapter` (a name) must match that encoder."""
    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        for rel, digest in manifest.get("files", {}).items():
            f = path / rel
            if not f.is_file():
                raise ArtifactError(f"{path} is incomplete: {rel} is missing; rebuild the artifact")
            if sha256_file(f) != digest:
                raise ArtifactError(f"{path} is corrupt: checksum of {rel} does not match the manifest; rebuild it")
    encoder = manifest.get("encoder")
    if adapter is not None and (encoder or {}).get("name") != adapter:
        raise ArtifactError(f"{path} was built with encoder {(encoder or {}).get('name')!r}, not adapter {adapter!r}; "
                            f"rebuild it with `keystroke build --adapter {adapter}`")
    if "vector" in manifest["sources"] and embed is None:
        embed = _load_encoder(encoder)
    try:
        table = PhraseTable.load(path / "phrases")
        by_name = {cls.name: cls for cls in SOURCES + (VectorSource,)}
        sources = tuple(VectorSource.load(path / name, table, embed) if name == "vector"
                        else by_name[name].load(path / name, table) for name in manifest["sources"])
        lexical = LexicalIndex.load(path / LexicalIndex.name)
        catalog = ArtifactCatalog.from_json(json.loads((path / "catalog.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{path} cannot be loaded ({type(e).__name__}: {e}); rebuild the artifact") from None
    return Artifact(path, manifest, table, sources, lexical, catalog)


def _load_encoder(encoder: dict | None) -> Embed:
    """The encoder a manifest names (the base model, or a LoRA adapter merged into it)."""
    from adapters.encoder import Encoder  # torch is imported only for artifacts that need it

    if not encoder:
        raise ArtifactError("the artifact has a vector source but its manifest names no encoder; rebuild it")
    adapter_dir = encoder.get("path")
    if adapter_dir and not Path(adapter_dir).is_dir():
        raise ArtifactError(f"the artifact's adapter {encoder.get('name')!r} is not at {adapter_dir}; "
                            "put it back or rebuild the artifact")
    model = Encoder.load(adapter_dir) if adapter_dir else Encoder.base()
    return model.encode
