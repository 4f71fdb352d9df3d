"""A seeded demo world: a small grocery catalog with users, orders, a query log and stores.

Deterministic for a given seed, so the default run and the unit tests need no external data.
Names follow Instacart's style ("Brand Modifier Type"); everything here is simulated.
"""

from __future__ import annotations

import random
from suggest.loaders import derive_brands
from suggest.types import Catalog, Dataset, Order, Product, QueryLogEntry

__all__ = ["make_demo_world"]

# department -> aisle -> product types
_WORLD = {
    "produce": {
        "fresh fruits": ["banana", "apple", "strawberries", "blueberries", "avocado", "lemon", "grapes"],
        "fresh vegetables": ["baby spinach", "broccoli crowns", "carrots", "yellow onion", "cucumber", "zucchini"],
        "packaged vegetables fruits": ["salad mix", "baby carrots", "cherry tomatoes", "snap peas"],
        "fresh herbs": ["cilantro", "basil", "parsley", "mint"],
    },
    "dairy eggs": {
        "yogurt": ["greek yogurt", "yogurt", "yogurt drink", "skyr"],
        "milk": ["whole milk", "oat milk", "almond milk", "reduced fat milk"],
        "packaged cheese": ["shredded mozzarella", "cheddar cheese", "string cheese", "parmesan"],
        "eggs": ["large eggs", "cage free eggs", "egg whites"],
        "butter": ["salted butter", "unsalted butter"],
    },
    "bakery": {
        "bread": ["sourdough bread", "whole wheat bread", "bagels", "english muffins"],
        "breakfast bakery": ["croissants", "blueberry muffins", "cinnamon rolls"],
        "tortillas flat bread": ["flour tortillas", "corn tortillas", "pita bread"],
    },
    "beverages": {
        "water seltzer sparkling water": ["sparkling water", "spring water", "seltzer"],
        "juice nectars": ["orange juice", "apple juice", "lemonade", "coconut water"],
        "coffee": ["ground coffee", "whole bean coffee", "cold brew coffee", "coffee pods"],
        "tea": ["green tea", "black tea", "herbal tea", "chai tea"],
        "soft drinks": ["cola", "ginger ale", "lemon lime soda"],
    },
    "snacks": {
        "chips pretzels": ["tortilla chips", "potato chips", "pretzels", "kettle chips"],
        "cookies cakes": ["chocolate chip cookies", "sandwich cookies", "oatmeal cookies"],
        "crackers": ["whole wheat crackers", "cheese crackers", "rice crackers"],
        "nuts seeds dried fruit": ["almonds", "cashews", "trail mix", "pistachios"],
        "energy granola bars": ["granola bars", "protein bars", "fruit bars"],
    },
    "frozen": {
        "frozen meals": ["chicken burrito", "mac and cheese", "pad thai", "lasagna"],
        "ice cream ice": ["vanilla ice cream", "chocolate ice cream", "gelato", "ice cream bars"],
        "frozen produce": ["frozen blueberries", "frozen peas", "frozen broccoli"],
        "frozen pizza": ["pepperoni pizza", "margherita pizza", "cheese pizza"],
    },
    "pantry": {
        "pasta": ["spaghetti", "penne", "fusilli", "lasagna noodles"],
        "canned goods": ["black beans", "chickpeas", "diced tomatoes", "coconut milk"],
        "oils vinegars": ["extra virgin olive oil", "balsamic vinegar", "avocado oil"],
        "spices seasonings": ["sea salt", "black pepper", "garlic powder", "cinnamon"],
        "cereal": ["granola", "oat cereal", "corn flakes", "muesli"],
    },
    "meat seafood": {
        "poultry counter": ["chicken breast", "chicken thighs", "ground turkey"],
        "packaged meat": ["bacon", "smoked turkey", "ham"],
        "seafood counter": ["salmon fillet", "shrimp", "cod fillet"],
    },
    "household": {
        "paper goods": ["paper towels", "toilet paper", "facial tissues"],
        "cleaning products": ["dish soap", "all purpose cleaner", "laundry detergent"],
    },
    "babies": {
        "baby food formula": ["baby food pouch", "infant formula", "puffs"],
        "diapers wipes": ["diapers", "baby wipes"],
    },
}
_MODIFIERS = ["organic", "original", "low fat", "unsweetened", "family size", "classic", "lightly salted",
              "honey", "vanilla", "strawberry", "whole grain", "gluten free", "natural", "simply", "extra"]
_SYLLABLES = ["bel", "co", "ma", "ri", "ton", "va", "lu", "sen", "da", "ko", "mi", "ra", "zen", "po", "li", "fa"]


def _brand_names(rng: random.Random, n: int) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize()
        names.add(word + rng.choice(["", "", " Farms", " Kitchen", "'s"]))
    return sorted(names)


def _catalog(rng: random.Random, variants: int) -> Catalog:
    departments, aisles, products = {}, {}, []
    brands = _brand_names(rng, 60)
    for d_id, (dept, dept_aisles) in enumerate(_WORLD.items(), start=1):
        departments[d_id] = dept
        dept_brands = rng.sample(brands, 8)
        for aisle, types in dept_aisles.items():
            a_id = len(aisles) + 1
            aisles[a_id] = aisle
            for ptype in types:
                names = set()
                for _ in range(variants):
                    parts = [rng.choice(dept_brands)] if rng.random() < 0.8 else []
                    parts += rng.sample(_MODIFIERS, rng.choice((0, 1, 1, 2)))
                    parts.append(ptype)
                    name = " ".join(parts).title().replace("'S", "'s")
                    if rng.random() < 0.3:
                        name += f", {rng.choice((8, 12, 16, 32, 64))} oz"
                    names.add(name)
                for name in sorted(names):
                    products.append(Product(len(products) + 1, name, a_id, d_id))
    return Catalog(tuple(derive_brands(products)), aisles, departments)


def _orders(rng: random.Random, catalog: Catalog, n_users: int) -> tuple[Order, ...]:
    by_aisle: dict[int, list[Product]] = {}
    for p in catalog.products:
        by_aisle.setdefault(p.aisle_id, []).append(p)
    aisle_ids = sorted(by_aisle)
    # Zipf-like product appeal inside each aisle: a few best-sellers, a long tail.
    appeal = {p.product_id: 1.0 / (1 + rank) ** 1.1 for a in aisle_ids
              for rank, p in enumerate(rng.sample(by_aisle[a], len(by_aisle[a])))}
    orders, order_id = [], 1
    for user_id in range(1, n_users + 1):
        taste = {a: rng.gammavariate(0.4, 1.0) for a in aisle_ids}
        weights = [taste[a] for a in aisle_ids]
        staples: list[int] = []
        hour_peak = rng.choice((9, 11, 14, 17, 20))
        history: set[int] = set()
        for number in range(1, rng.randint(3, 16) + 1):
            basket: dict[int, bool] = {}
            for _ in range(max(1, int(rng.expovariate(1 / 8)))):
                if staples and rng.random() < 0.55:
                    pid = rng.choice(staples)
                else:
                    items = by_aisle[rng.choices(aisle_ids, weights)[0]]
                    pid = rng.choices(items, [appeal[p.product_id] for p in items])[0].product_id
                    if rng.random() < 0.3:
                        staples.append(pid)
                basket.setdefault(pid, pid in history)
            history.update(basket)
            hour = min(23, max(6, int(rng.gauss(hour_peak, 2))))
            orders.append(Order(order_id, user_id, number, tuple(basket), tuple(basket.values()),
                                rng.randrange(7), hour, None if number == 1 else float(rng.randint(3, 30))))
            order_id += 1
    return tuple(orders)


def _query_log(rng: random.Random, catalog: Catalog, orders: tuple[Order, ...]) -> tuple[QueryLogEntry, ...]:
    """Shoppers search product types and brands roughly in proportion to what they buy."""
    types = [t for aisles in _WORLD.values() for ts in aisles.values() for t in ts]
    counts: dict[str, int] = {}
    for order in rng.sample(orders, min(len(orders), 2000)):
        for pid in order.product_ids[:2]:
            p = catalog.get(pid)
            query = next((t for t in types if p.name.lower().split(',')[0].endswith(t)), p.name.lower())
            if rng.random() < 0.2 and p.brand:
                query = f"{p.brand.lower()} {query}"
            counts[query] = counts.get(query, 0) + 1
    return tuple(QueryLogEntry(q, n) for q, n in sorted(counts.items()))


def _stock(rng: random.Random, catalog: Catalog) -> dict[str, frozenset[int]]:
    return {store: frozenset(p.product_id for p in catalog.products if rng.random() < rate)
            for store, rate in (("store-1", 0.03), ("store-2", 0.08), ("store-3", 0.15))}


def make_demo_world(seed: int = 7, n_users: int = 600, variants: int = 24) -> Dataset:
    """The demo dataset; `variants` products per product type (about 125 types)."""
    rng = random.Random(seed)
    catalog = _catalog(rng, variants)
    orders = _orders(rng, catalog, n_users)
    data = Dataset(catalog, orders, query_log=_query_log(rng, catalog, orders), out_of_stock=_stock(rng, catalog),
                   checksums={"demo": f"seed={seed},users={n_users},variants={variants}"}, name=f"demo-{seed}")
    return data
