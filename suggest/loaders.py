"""Loaders for the Instacart CSV layout and for generic query logs.

A data directory holds `products.csv`, `aisles.csv`, `departments.csv` and optionally
`orders.csv`, `order_products.csv`, `order_lines_sample_with_user.csv`,
`order_products_unlinked.csv` (Instacart's names), `queries.csv|tsv` (a query log),
`stock.csv` (store,product_id,in_stock) and the business files `prices.csv` (product_id,price),
`margins.csv` (department_id,margin_rate) and `campaigns.csv` (campaign_id,brand,bid,budget).
Business files may also come from an overlay folder (`load_data(root, business=DIR)`), so the
simulated ones can sit beside read-only real data. Malformed rows are reported with file and line and
skipped, or raise `DataError` when `strict=True`.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from suggest.errors import DataError
from suggest.text import normalize
from suggest.types import Campaign, Catalog, Dataset, Order, Product, QueryLogEntry

__all__ = ["load_data", "load_query_log", "derive_brands", "write_data", "write_business", "sha256_file"]

_DESCRIPTORS = frozenset(
    "organic natural fresh original classic large small medium mini extra light lite low "
    "reduced fat free whole pure premium gourmet simply real baby sweet spicy hot mild old new "
    "all 100% plain unsweetened vanilla chocolate strawberry honey dark white red green black "
    "sparkling frozen raw wild greek italian french 2% 1% non".split()
)


_UNKNOWN_POSITION = 1 << 30  # sample lines carry no add_to_cart_order


class _Report:
    """Collects malformed-row messages; raises at the first one when strict."""

    def __init__(self, strict: bool, out=sys.stderr, limit: int = 20):
        self.strict, self.out, self.limit, self.count = strict, out, limit, 0

    def bad(self, path: Path, line: int, message: str) -> None:
        if self.strict:
            raise DataError(message, str(path), line)
        self.count += 1
        if self.count <= self.limit:
            print(f"warning: {path}:{line}: {message} (row skipped)", file=self.out)

    def done(self) -> None:
        if self.count > self.limit:
            print(f"warning: {self.count - self.limit} more malformed rows skipped", file=self.out)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rows(path: Path, required: tuple[str, ...], report: _Report, delimiter: str = ",") -> Iterator[tuple[int, dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise DataError(f"missing column(s) {missing}; found {reader.fieldnames}", str(path), 1)
        for row in reader:
            line = reader.line_num
            if None in row or any(row.get(c) is None for c in required):
                report.bad(path, line, f"expected {len(reader.fieldnames)} fields")
                continue
            yield line, row


def _parse(path: Path, line: int, report: _Report, row: dict, spec: dict[str, Callable]) -> dict | None:
    out = {}
    for col, conv in spec.items():
        raw = row.get(col, "")
        try:
            out[col] = conv(raw)
        except (TypeError, ValueError):
            report.bad(path, line, f"bad {col}={raw!r}")
            return None
    return out


def _opt_float(raw: str) -> float | None:
    return float(raw) if raw not in ("", None) else None


def _opt_int(raw: str) -> int | None:
    return int(float(raw)) if raw not in ("", None) else None


def _bool01(raw: str) -> bool:
    if raw not in ("0", "1", "0.0", "1.0", "true", "false", "True", "False"):
        raise ValueError(raw)
    return raw in ("1", "1.0", "true", "True")


def derive_brands(products: list[Product]) -> list[Product]:
    """Brand = the longest leading 1-3 word n-gram that starts several names and rarely occurs later in one."""
    words = [p.name.split() for p in products]
    starts: Counter = Counter()
    inside: Counter = Counter()
    for w in words:
        for n in (1, 2, 3):
            if len(w) > n:
                starts[" ".join(w[:n])] += 1
        for i in range(1, len(w)):
            inside[w[i]] += 1
    out = []
    for p, w in zip(products, words):
        brand = None
        first = w[0] if len(w) > 1 and w[0][-1].isalnum() else None
        if first and normalize(first) not in _DESCRIPTORS and starts[first] >= 3 and inside[first] <= starts[first] // 4:
            brand = first
            for n in (2, 3):
                gram = " ".join(w[:n])
                if len(w) > n and w[n - 1][-1].isalnum() and starts[gram] >= 3 and starts[gram] * 2 >= starts[first]:
                    brand = gram
        out.append(replace(p, brand=brand))
    return out


def _load_catalog(root: Path, report: _Report) -> Catalog:
    aisles = {}
    for line, row in _rows(root / "aisles.csv", ("aisle_id", "aisle"), report):
        r = _parse(root / "aisles.csv", line, report, row, {"aisle_id": int, "aisle": str})
        if r:
            aisles[r["aisle_id"]] = r["aisle"]
    departments = {}
    for line, row in _rows(root / "departments.csv", ("department_id", "department"), report):
        r = _parse(root / "departments.csv", line, report, row, {"department_id": int, "department": str})
        if r:
            departments[r["department_id"]] = r["department"]
    products, seen = [], set()
    spec = {"product_id": int, "product_name": str, "aisle_id": int, "department_id": int}
    path = root / "products.csv"
    for line, row in _rows(path, tuple(spec), report):
        r = _parse(path, line, report, row, spec)
        if r is None:
            continue
        if r["product_id"] in seen:
            report.bad(path, line, f"duplicate product_id {r['product_id']}")
        elif r["aisle_id"] not in aisles or r["department_id"] not in departments:
            report.bad(path, line, f"unknown aisle_id {r['aisle_id']} or department_id {r['department_id']}")
        elif not normalize(r["product_name"]):
            report.bad(path, line, "empty product_name")
        else:
            seen.add(r["product_id"])
            products.append(Product(r["product_id"], r["product_name"].strip(), r["aisle_id"], r["department_id"]))
    if not products:
        raise DataError("no valid products", str(path))
    return Catalog(tuple(derive_brands(products)), aisles, departments)


def _load_orders(root: Path, catalog: Catalog, report: _Report) -> tuple[tuple[Order, ...], dict[int, int]]:
    meta: dict[int, dict] = {}
    path = root / "orders.csv"
    if path.exists():
        spec = {"order_id": int, "user_id": int, "order_number": int, "order_dow": _opt_int,
                "order_hour_of_day": _opt_int, "days_since_prior_order": _opt_float}
        for line, row in _rows(path, tuple(spec), report):
            r = _parse(path, line, report, row, spec)
            if r:
                meta[r["order_id"]] = r
    lines: dict[int, dict[int, tuple[int, bool | None]]] = defaultdict(dict)  # order -> product -> (position, reordered)
    anonymous: Counter = Counter()

    def add_line(p: Path, line: int, order_id: int, product_id: int, pos: int, reordered: bool | None) -> None:
        if catalog.get(product_id) is None:
            report.bad(p, line, f"unknown product_id {product_id}")
        elif order_id in meta:
            prev = lines[order_id].get(product_id)
            if prev is None or prev[0] == _UNKNOWN_POSITION:
                lines[order_id][product_id] = (pos, reordered)
        else:
            anonymous[product_id] += 1

    path = root / "order_lines_sample_with_user.csv"
    if path.exists():  # it names users for orders that orders.csv lacks
        spec = {"order_id": int, "user_id": int, "order_number": int, "product_id": int}
        for line, row in _rows(path, tuple(spec), report):
            r = _parse(path, line, report, row, spec)
            if r:
                meta.setdefault(r["order_id"], {"order_id": r["order_id"], "user_id": r["user_id"],
                                                "order_number": r["order_number"]})
                add_line(path, line, r["order_id"], r["product_id"], _UNKNOWN_POSITION, None)
    spec = {"order_id": int, "product_id": int, "add_to_cart_order": int,
            "reordered": lambda raw: None if raw == "" else _bool01(raw)}
    for name in ("order_products.csv", "order_products_unlinked.csv"):
        path = root / name
        for line, row in _rows(path, tuple(spec), report) if path.exists() else ():
            r = _parse(path, line, report, row, spec)
            if r:
                add_line(path, line, r["order_id"], r["product_id"], r["add_to_cart_order"], r["reordered"])
    orders = []
    for order_id, items in lines.items():
        m = meta[order_id]
        ranked = sorted(items.items(), key=lambda kv: kv[1][0])
        orders.append(Order(order_id, m["user_id"], m["order_number"], tuple(p for p, _ in ranked),
                            tuple(r for _, (_, r) in ranked), m.get("order_dow"), m.get("order_hour_of_day"),
                            m.get("days_since_prior_order")))
    orders.sort(key=lambda o: (o.user_id, o.order_number, o.order_id))
    return tuple(orders), dict(anonymous)


def load_query_log(path: Path, strict: bool = False, report: _Report | None = None) -> tuple[QueryLogEntry, ...]:
    """CSV or TSV with a `query` column and optional `count`, `user_id`, `timestamp`."""
    path = Path(path)
    report = report or _Report(strict)
    delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    spec = {"query": str, "count": lambda s: int(s) if s else 1, "user_id": _opt_int, "timestamp": lambda s: s or None}
    out = []
    for line, row in _rows(path, ("query",), report, delimiter):
        r = _parse(path, line, report, {**{"count": "", "user_id": "", "timestamp": ""}, **row}, spec)
        if r is None:
            continue
        if not normalize(r["query"]) or r["count"] < 1:
            report.bad(path, line, "empty query or count < 1")
            continue
        out.append(QueryLogEntry(r["query"], r["count"], r["user_id"], r["timestamp"]))
    report.done()
    return tuple(out)


def _load_stock(path: Path, catalog: Catalog, report: _Report) -> dict[str, frozenset[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    spec = {"store": str, "product_id": int, "in_stock": _bool01}
    for line, row in _rows(path, tuple(spec), report):
        r = _parse(path, line, report, row, spec)
        if r is None:
            continue
        if catalog.get(r["product_id"]) is None:
            report.bad(path, line, f"unknown product_id {r['product_id']}")
            continue
        stock = out[r["store"]]
        if not r["in_stock"]:
            stock.add(r["product_id"])
    return {store: frozenset(ids) for store, ids in out.items()}


def _positive(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError(raw)
    return value


def _rate(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value < 1.0:
        raise ValueError(raw)
    return value


def _load_business(dirs: list[Path], catalog: Catalog, report: _Report):
    """prices, margin rates and campaigns: the first of `dirs` holding each file wins."""
    def find(name: str) -> Path | None:
        return next((d / name for d in dirs if (d / name).exists()), None)

    prices, margins, campaigns = {}, {}, []
    if path := find("prices.csv"):
        for line, row in _rows(path, ("product_id", "price"), report):
            r = _parse(path, line, report, row, {"product_id": int, "price": _positive})
            if r and catalog.get(r["product_id"]) is None:
                report.bad(path, line, f"unknown product_id {r['product_id']}")
            elif r:
                prices[r["product_id"]] = r["price"]
    if path := find("margins.csv"):
        for line, row in _rows(path, ("department_id", "margin_rate"), report):
            r = _parse(path, line, report, row, {"department_id": int, "margin_rate": _rate})
            if r and r["department_id"] not in catalog.departments:
                report.bad(path, line, f"unknown department_id {r['department_id']}")
            elif r:
                margins[r["department_id"]] = r["margin_rate"]
    if path := find("campaigns.csv"):
        spec = {"campaign_id": str, "brand": str, "bid": _positive, "budget": _positive}
        for line, row in _rows(path, tuple(spec), report):
            r = _parse(path, line, report, row, spec)
            if r:
                campaigns.append(Campaign(r["campaign_id"], r["brand"], r["bid"], r["budget"]))
    return prices, margins, tuple(campaigns)


def load_data(root: Path | str, strict: bool = False, out=sys.stderr, business: Path | str | None = None) -> Dataset:
    """Load a data directory in the Instacart layout (see module docstring)."""
    root = Path(root)
    if not (root / "products.csv").exists():
        raise DataError("not a data directory: products.csv not found", str(root))
    report = _Report(strict, out)
    catalog = _load_catalog(root, report)
    orders, anonymous = _load_orders(root, catalog, report)
    log = ()
    for name in ("queries.csv", "queries.tsv"):
        if (root / name).exists():
            log = load_query_log(root / name, strict, report)
    dirs = [Path(business), root] if business else [root]
    stock_path = next((d / "stock.csv" for d in dirs if (d / "stock.csv").exists()), None)
    stock = _load_stock(stock_path, catalog, report) if stock_path else {}
    prices, margins, campaigns = _load_business(dirs, catalog, report)
    report.done()
    checksums = {p.name: sha256_file(p) for d in reversed(dirs) for p in sorted(d.glob("*.[ct]sv"))}
    return Dataset(catalog, orders, anonymous, log, stock, prices=prices, margin_rates=margins, campaigns=campaigns,
                   checksums=checksums, name=root.name)


def write_data(dataset: Dataset, root: Path | str) -> Path:
    """Write a dataset in the layout `load_data` reads (used to export the demo world)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cat = dataset.catalog

    def write(name: str, header: list[str], rows) -> None:
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    write("aisles.csv", ["aisle_id", "aisle"], sorted(cat.aisles.items()))
    write("departments.csv", ["department_id", "department"], sorted(cat.departments.items()))
    write("products.csv", ["product_id", "product_name", "aisle_id", "department_id"],
          ((p.product_id, p.name, p.aisle_id, p.department_id) for p in cat.products))
    write("orders.csv", ["order_id", "user_id", "eval_set", "order_number", "order_dow", "order_hour_of_day",
                         "days_since_prior_order"],
          ((o.order_id, o.user_id, "prior", o.order_number, o.dow, o.hour,
            "" if o.days_since_prior is None else o.days_since_prior) for o in dataset.orders))
    write("order_products.csv", ["order_id", "product_id", "add_to_cart_order", "reordered"],
          ((o.order_id, p, i + 1, "" if r is None else int(r)) for o in dataset.orders
           for i, (p, r) in enumerate(zip(o.product_ids, o.reordered or (None,) * len(o.product_ids)))))
    if dataset.anonymous_lines:
        write("order_products_unlinked.csv", ["order_id", "product_id", "add_to_cart_order", "reordered"],
              ((-1, p, 1, 0) for p, n in sorted(dataset.anonymous_lines.items()) for _ in range(n)))
    if dataset.query_log:
        write("queries.csv", ["query", "count", "user_id", "timestamp"],
              ((q.query, q.count, "" if q.user_id is None else q.user_id, q.timestamp or "") for q in dataset.query_log))
    write_business(dataset, root)
    return root


def write_business(dataset: Dataset, root: Path | str) -> Path:
    """Write stock, prices, margins and campaigns (whichever the dataset has) as CSVs."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    def write(name: str, header: list[str], rows) -> None:
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    if dataset.out_of_stock:
        # every store gets a row even when nothing is out there, so that the store is known
        write("stock.csv", ["store", "product_id", "in_stock"],
              [r for s, ids in sorted(dataset.out_of_stock.items())
               for r in ([(s, p, 0) for p in sorted(ids)] or [(s, dataset.catalog.products[0].product_id, 1)])])
    if dataset.prices:
        write("prices.csv", ["product_id", "price"], ((p, f"{v:.2f}") for p, v in sorted(dataset.prices.items())))
    if dataset.margin_rates:
        write("margins.csv", ["department_id", "margin_rate"],
              ((d, f"{v:.4f}") for d, v in sorted(dataset.margin_rates.items())))
    if dataset.campaigns:
        write("campaigns.csv", ["campaign_id", "brand", "bid", "budget"],
              ((c.campaign_id, c.brand, f"{c.bid:.4f}", f"{c.budget:.2f}") for c in dataset.campaigns))
    return root
