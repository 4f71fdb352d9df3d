import csv
import io

import pytest

from suggest.demo import make_demo_world
from suggest.errors import DataError
from suggest.loaders import load_data, load_query_log, write_data


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def tiny_dir(tmp_path):
    _write(tmp_path / "aisles.csv", ["aisle_id", "aisle"], [[1, "fresh fruits"], [2, "yogurt"]])
    _write(tmp_path / "departments.csv", ["department_id", "department"], [[1, "produce"], [2, "dairy eggs"]])
    _write(tmp_path / "products.csv", ["product_id", "product_name", "aisle_id", "department_id"],
           [[1, "Banana", 1, 1], [2, "Greek Yogurt, Plain", 2, 2], ["x", "Bad Id", 1, 1], [3, "Lost", 9, 1]])
    _write(tmp_path / "orders.csv", ["order_id", "user_id", "eval_set", "order_number", "order_dow",
                                     "order_hour_of_day", "days_since_prior_order"],
           [[10, 5, "prior", 1, 2, 9, ""], [11, 5, "prior", 2, 3, 10, "7.0"]])
    _write(tmp_path / "order_products.csv", ["order_id", "product_id", "add_to_cart_order", "reordered"],
           [[10, 1, 1, 0], [11, 1, 1, 1], [11, 2, 2, 0], [11, 99, 3, 0], [77, 2, 1, 0]])
    return tmp_path


def test_instacart_layout_loads_and_reports_bad_rows(tiny_dir):
    err = io.StringIO()
    data = load_data(tiny_dir, out=err)
    assert [p.name for p in data.catalog.products] == ["Banana", "Greek Yogurt, Plain"]
    assert [o.product_ids for o in data.orders] == [(1,), (1, 2)]
    assert data.orders[1].reordered == (True, False) and data.orders[1].days_since_prior == 7.0
    assert data.anonymous_lines == {2: 1}  # order 77 has no known user: it still counts for popularity
    report = err.getvalue()
    assert "products.csv:4: bad product_id='x'" in report      # file and line of each malformed row
    assert "products.csv:5: unknown aisle_id 9" in report
    assert "order_products.csv:5: unknown product_id 99" in report
    assert set(data.checksums) >= {"products.csv", "orders.csv"}


def test_strict_mode_rejects_the_first_bad_row(tiny_dir):
    with pytest.raises(DataError, match=r"products.csv:4: bad product_id"):
        load_data(tiny_dir, strict=True)


def test_missing_column_is_a_clear_error(tmp_path, tiny_dir):
    _write(tiny_dir / "aisles.csv", ["id", "name"], [[1, "x"]])
    with pytest.raises(DataError, match=r"aisles.csv:1: missing column\(s\) \['aisle_id', 'aisle'\]"):
        load_data(tiny_dir)


def test_not_a_data_directory(tmp_path):
    with pytest.raises(DataError, match="products.csv not found"):
        load_data(tmp_path)


def test_query_log_csv_and_tsv(tmp_path):
    (tmp_path / "q.tsv").write_text("query\tcount\tuser_id\nbananas\t4\t7\n\t3\t\noat milk\t\t\n")
    err = io.StringIO()
    from suggest.loaders import _Report
    log = load_query_log(tmp_path / "q.tsv", report=_Report(False, err))
    assert [(e.query, e.count, e.user_id) for e in log] == [("bananas", 4, 7), ("oat milk", 1, None)]
    assert "q.tsv:3: empty query" in err.getvalue()
    (tmp_path / "q.csv").write_text('query\n"greek yogurt, plain"\n')
    assert load_query_log(tmp_path / "q.csv")[0].query == "greek yogurt, plain"


def test_demo_world_round_trips_through_the_csv_layout(tmp_path):
    world = make_demo_world(seed=3, n_users=30, variants=3)
    back = load_data(write_data(world, tmp_path / "demo"), strict=True)
    assert back.catalog.products == world.catalog.products
    assert back.orders == world.orders
    assert back.out_of_stock == world.out_of_stock
    assert {(q.query, q.count) for q in back.query_log} == {(q.query, q.count) for q in world.query_log}


def test_demo_world_is_seeded():
    a, b, c = make_demo_world(seed=1, n_users=40), make_demo_world(seed=1, n_users=40), make_demo_world(seed=2, n_users=40)
    assert a == b
    assert a.orders != c.orders
    assert len(make_demo_world().catalog) >= 2000  # the default demo has a few thousand products
