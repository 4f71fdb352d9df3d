"""The feature store beyond one process: a saved snapshot, and Redis for many serving replicas.

    save_store / load_store   the whole InMemoryFeatureStore in one gzip JSON file, written atomically;
                              a missing, corrupt or other-version file is refused (ArtifactError)
    publish                   copies a store into Redis under a fresh version, then switches
                              `<namespace>:current` to it in one SET: readers see all of it or none
    RedisFeatureStore         a FeatureStore over what was published: the static catalog is read once
                              per version and kept in process; item counters and user stats are read
                              on every call, so each replica sees the others' impressions and purchases

Keys of one version, under `<namespace>:<version>:`
    catalog                        CatalogFeatures.state() as JSON
    impressions | clicks | carts   hashes: item -> count
    user:<id>                      hash: orders, days, reordered, flagged, a:<aisle>, b:<brand>, p:<product>

Every read is one MULTI/EXEC that also reads the pointer, so it comes whole from one version (a
request that spans a publish may take its user from the old version and its items from the new, as
it may see two moments of live counters). Writes WATCH the pointer and retry on the new version.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence

from redis.exceptions import WatchError

from ranking.features import CatalogFeatures, InMemoryFeatureStore, ItemStats, UserStats, _purchase_lines
from suggest.errors import ArtifactError
from suggest.events import Impression

__all__ = ["SNAPSHOT_FILE", "FORMAT_VERSION", "save_store", "load_store", "publish", "RedisFeatureStore"]

SNAPSHOT_FILE = "feature_store.json.gz"
FORMAT_VERSION = 1
_FORMAT = "keystroke-feature-store"
_ITEM_HASHES = ("impressions", "clicks", "carts")   # in ItemStats order
_VERSION = re.compile(r"v[0-9a-f]+-[0-9a-f]+")
_RETRIES = 16          # reads and writes retried while publishes keep switching the version under them
_BATCH = 1000          # commands (and hash fields) per pipeline flush when publishing


def save_store(store: InMemoryFeatureStore, directory: Path) -> None:
    """Write the store to `directory/feature_store.json.gz`: same store, same bytes; never half a file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"format": _FORMAT, "format_version": FORMAT_VERSION, "state": store.state()}
    blob = gzip.compress(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), mtime=0)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{SNAPSHOT_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / SNAPSHOT_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)   # make the rename itself durable
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_store(directory: Path) -> InMemoryFeatureStore:
    """The store `save_store` wrote to `directory`."""
    path = Path(directory) / SNAPSHOT_FILE
    try:
        doc = json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no feature store snapshot here; write one with save_store") from None
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise ArtifactError(f"{path}: corrupt feature store snapshot ({e}); save it again") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ArtifactError(f"{path}: not a feature store snapshot")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: feature store format_version {doc.get('format_version')!r}, "
                            f"this build reads {FORMAT_VERSION}; save it again")
    try:
        return InMemoryFeatureStore.from_state(doc["state"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{path}: malformed feature store snapshot ({type(e).__name__}: {e})") from None


def _check_namespace(namespace: str) -> str:
    # no glob characters: old versions are found with SCAN MATCH <namespace>:<version>:*
    if not isinstance(namespace, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", namespace):
        raise ValueError(f"namespace must be letters, digits and _.:- only, got {namespace!r}")
    return namespace


def _str(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _user_fields(u: dict) -> dict[str, str]:
    """One user of InMemoryFeatureStore.state() as the fields of its Redis hash."""
    fields = {"orders": str(u["orders"]), "reordered": str(u["reordered"]), "flagged": str(u["flagged"])}
    if u["days_since_order"] is not None:
        fields["days"] = repr(float(u["days_since_order"]))
    fields.update({f"a:{a}": str(n) for a, n in u["aisles"].items()})
    fields.update({f"b:{b}": str(n) for b, n in u["brands"].items()})
    fields.update({f"p:{p}": "1" for p in u["bought"]})
    return fields


def _user_from_fields(raw: dict) -> UserStats | None:
    if not raw:
        return None
    f = {_str(k): _str(v) for k, v in raw.items()}
    reordered, flagged = int(f.get("reordered", 0)), int(f.get("flagged", 0))
    s = UserStats(orders=int(f["orders"]), days_since_order=float(f["days"]) if "days" in f else None,
                  reorder_rate=reordered / flagged if flagged else 0.0)
    bought = []
    for key, value in f.items():
        kind, _, name = key.partition(":")
        if kind == "a":
            s.aisles[int(name)] = int(value)
        elif kind == "b":
            s.brands[name] = int(value)
        elif kind == "p":
            bought.append(int(name))
    s.bought = frozenset(bought)
    return s


def publish(store: InMemoryFeatureStore, client, namespace: str = "keystroke") -> str:
    """Copy `store` into Redis as a new version, make it current, drop the one it replaced; the version."""
    _check_namespace(namespace)
    version = f"v{time.time_ns():x}-{secrets.token_hex(4)}"
    prefix = f"{namespace}:{version}"
    state = store.state()
    pipe = client.pipeline(transaction=False)   # nothing reads this prefix until the pointer moves

    def flush_if_full() -> None:
        if len(pipe) >= _BATCH:
            pipe.execute()

    pipe.set(f"{prefix}:catalog", json.dumps(state["catalog"], sort_keys=True, separators=(",", ":")))
    for column, name in enumerate(_ITEM_HASHES):
        counts = [(item, str(v[column])) for item, v in state["items"].items() if v[column]]
        for i in range(0, len(counts), _BATCH):
            pipe.hset(f"{prefix}:{name}", mapping=dict(counts[i:i + _BATCH]))
            flush_if_full()
    for uid, u in state["users"].items():
        pipe.hset(f"{prefix}:user:{uid}", mapping=_user_fields(u))
        flush_if_full()
    pipe.execute()
    previous = _str(client.set(f"{namespace}:current", version, get=True))
    if previous and previous != version and _VERSION.fullmatch(previous):
        _drop_version(client, namespace, previous)
    return version


def _drop_version(client, namespace: str, version: str) -> None:
    keys = list(client.scan_iter(match=f"{namespace}:{version}:*", count=_BATCH))
    for i in range(0, len(keys), _BATCH):
        client.unlink(*keys[i:i + _BATCH])


class RedisFeatureStore:
    """A FeatureStore over the version `publish` made current in Redis; one per serving replica.

    `client` is a redis-py client (bytes or decoded responses); the static catalog is kept in
    process per version, and a read that finds the pointer moved switches to the new version.
    """

    def __init__(self, client, namespace: str = "keystroke"):
        self._r = client
        self._ns = _check_namespace(namespace)
        self._pointer = f"{namespace}:current"
        self._pinned: tuple[str, CatalogFeatures] | None = None   # (version, its catalog), swapped as one

    @property
    def version(self) -> str | None:
        """The published version the last read came from (None before the first)."""
        return self._pinned[0] if self._pinned else None

    def _nothing_published(self) -> ArtifactError:
        return ArtifactError(f"no feature store published under Redis namespace {self._ns!r} "
                             f"({self._pointer} is unset); run publish first")

    def _adopt(self, version: str, catalog_json: Any) -> CatalogFeatures:
        if catalog_json is None:
            raise ArtifactError(f"{self._ns}:{version}:catalog is missing: the published version is incomplete")
        catalog = CatalogFeatures.from_state(json.loads(catalog_json))
        self._pinned = (version, catalog)
        return catalog

    def _read(self, queue: Callable[[Any, str], None]) -> list:
        """Results of the commands `queue(pipe, prefix)` adds, all from the version that is current."""
        pinned = self._pinned
        version = pinned[0] if pinned else _str(self._r.get(self._pointer))
        for _ in range(_RETRIES):
            if version is None:
                raise self._nothing_published()
            prefix = f"{self._ns}:{version}"
            need_catalog = pinned is None or pinned[0] != version
            pipe = self._r.pipeline(transaction=True)
            pipe.get(self._pointer)
            if need_catalog:
                pipe.get(f"{prefix}:catalog")
            queue(pipe, prefix)
            current, *results = pipe.execute()
            if _str(current) == version:
                if need_catalog:
                    self._adopt(version, results.pop(0))
                return results
            version, pinned = _str(current), None
        raise ArtifactError(f"Redis namespace {self._ns!r}: the published version changed {_RETRIES} times "
                            f"during one read")

    def _catalog(self) -> CatalogFeatures:
        pinned = self._pinned
        if pinned is None:
            self._read(lambda pipe, prefix: None)
            pinned = self._pinned
        return pinned[1]

    def _write(self, commands: Callable[[Any, str, Any], None],
               read: Callable[[Any, str, CatalogFeatures], Any] = lambda pipe, prefix, catalog: None) -> None:
        """`commands(pipe, prefix, read(pipe, prefix, catalog))` in one MULTI/EXEC on the current version."""
        with self._r.pipeline(transaction=True) as pipe:
            for _ in range(_RETRIES):
                try:
                    pipe.watch(self._pointer)          # a publish in between aborts EXEC: we retry
                    version = _str(pipe.get(self._pointer))
                    if version is None:
                        raise self._nothing_published()
                    pinned = self._pinned
                    catalog = (pinned[1] if pinned and pinned[0] == version
                               else self._adopt(version, self._r.get(f"{self._ns}:{version}:catalog")))
                    prefix = f"{self._ns}:{version}"
                    seen = read(pipe, prefix, catalog)  # immediate mode: may WATCH more keys
                    pipe.multi()
                    commands(pipe, prefix, seen)
                    pipe.execute()
                    return
                except WatchError:
                    continue
        raise ArtifactError(f"Redis namespace {self._ns!r}: a write lost {_RETRIES} races in a row")

    def user(self, user_id: int | None) -> UserStats | None:
        if user_id is None:
            return None
        (raw,) = self._read(lambda pipe, prefix: pipe.hgetall(f"{prefix}:user:{user_id}"))
        return _user_from_fields(raw)

    def item(self, item: str) -> ItemStats:
        return self.items([item])[0]

    def items(self, items: Sequence[str]) -> list[ItemStats]:
        items = list(items)
        if not items:
            return []

        def queue(pipe, prefix):
            for name in _ITEM_HASHES:
                pipe.hmget(f"{prefix}:{name}", items)
        shown, clicks, carts = self._read(queue)
        return [ItemStats(int(i or 0), int(c or 0), int(a or 0)) for i, c, a in zip(shown, clicks, carts)]

    def product(self, product_id: int) -> tuple[int, str | None, float, float]:
        return self._catalog().product(product_id)

    def in_stock(self, product_id: int, store: str | None) -> bool:
        return self._catalog().in_stock(product_id, store)

    def bid(self, brand: str | None) -> float:
        return self._catalog().bid(brand)

    def idf(self, word: str) -> float:
        return self._catalog().idf(word)

    def add_impression(self, imp: Impression) -> None:
        """Count one logged impression into the items' counters, seen at once by every replica."""
        def commands(pipe, prefix, _):
            for item in imp.items:
                pipe.hincrby(f"{prefix}:impressions", item.item, 1)
                if item.position in imp.clicks:
                    pipe.hincrby(f"{prefix}:clicks", item.item, 1)
                if any(p in imp.add_to_carts for p in item.product_ids):
                    pipe.hincrby(f"{prefix}:carts", item.item, 1)
        self._write(commands)

    def add_purchase(self, user_id: int, product_ids: Sequence[int]) -> None:
        """Count one order into the user's history: a line of a product bought before is a reorder."""
        lines = _purchase_lines(product_ids)
        user_id = int(user_id)

        def read(pipe, prefix, catalog):
            key = f"{prefix}:user:{user_id}"
            pipe.watch(key)                          # two replicas buying for one user: one retries
            flags = pipe.hmget(key, [f"p:{p}" for p in lines])
            return {p for p, flag in zip(lines, flags) if flag is not None}, *catalog.tally(lines)

        def commands(pipe, prefix, seen):
            bought, aisles, brands = seen
            key = f"{prefix}:user:{user_id}"
            pipe.hincrby(key, "orders", 1)
            pipe.hset(key, mapping={"days": repr(0.0), **{f"p:{p}": "1" for p in lines}})
            pipe.hincrby(key, "reordered", sum(p in bought for p in lines))
            pipe.hincrby(key, "flagged", len(lines))
            for aisle, n in aisles.items():
                pipe.hincrby(key, f"a:{aisle}", n)
            for brand, n in brands.items():
                pipe.hincrby(key, f"b:{brand}", n)
        self._write(commands, read)
