"""Simulated sessions on the real catalog and real users' purchases, logged for training and OPE.

A visit replays one real order of one user: every product in it becomes an intent (eval.world.
intents), typed key by key into the suggest box. At each keystroke the logging policy orders the
candidates Keystroke returns (anonymous, popularity-scored) and the shopper may click (eval.world.
behaviour); a click, or the finished text, becomes a search whose product list the same policy
orders, and a click there may end in the cart. After the visit the user returns with a probability
that depends on how the visit went; a returning user's next visit is their next real order (or a
repeat of an earlier one once the data runs out). Every session is seeded by its own index, so a
run is reproducible byte for byte.

A world may carry a `search_value` (a ranker's objective value per product, see eval.value_tradeoff):
the search policy then orders the product list by those values instead of the log prior. The values
go to the policy as they are: greedy sorts by them, and Plackett-Luce draws with P(i) proportional to
exp(value_i / temperature), which the softmax's shift invariance keeps meaningful for negative values
but which puts the temperature in the objective's units (a log transform would break on them). The
logged `score` is still the prior, the input the ranker is trained on.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from eval.split import Split, split_dataset
from eval.world.behaviour import UserProfile, attraction, examination, purchase_probability, relevance, \
    return_probability
from eval.world.business import with_business
from eval.world.config import WorldConfig
from eval.world.intents import Intent, IntentModel, typed_states
from ranking.exploration import EpsilonGreedy, Greedy, PlackettLuce
from suggest.artifact import build_artifact, load_artifact
from suggest.events import SCHEMA_VERSION, EventWriter, Impression, ShownItem, Visit
from suggest.pipeline import Pipeline
from suggest.types import Dataset, Order

__all__ = ["World", "build_world", "make_policy", "simulate", "policy_value", "POLICIES"]

POLICIES = {
    "popularity": lambda: Greedy(),
    "epsilon-greedy": lambda: EpsilonGreedy(epsilon=0.2),
    "plackett-luce": lambda: PlackettLuce(temperature=1.0, item_propensities=False),
    # every order equally likely: position carries no information about relevance
    "uniform": lambda: PlackettLuce(temperature=1e9, item_propensities=False),
}


def make_policy(name: str):
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}")
    return POLICIES[name]()


@dataclass
class World:
    data: Dataset            # with business attributes
    cfg: WorldConfig
    split: Split
    pipeline: Pipeline       # built from the training split only
    intents: IntentModel
    # (query, user_id, product ids, (n,) prior, session id) -> (n,) finite values the search policy
    # ranks by; None: the log prior, as before
    search_value: Callable[[str, int | None, list[int], np.ndarray, str], np.ndarray] | None = None
    seed: int = 0            # of the business data and the split: train and test logs must share it

    def suggestions(self, text: str):
        return self.pipeline.suggest(self.pipeline.make_query(text, self.cfg.pool)) if text.strip() else []

    def products(self, query: str) -> tuple[list[int], np.ndarray]:
        """Search stand-in until /v1/search exists: the products of the query's suggestions, in order."""
        seen: dict[int, float] = {}
        for s in self.suggestions(query):
            for j, pid in enumerate(s.product_ids):
                seen.setdefault(pid, s.score / (1.0 + j))
            if len(seen) >= self.cfg.pool:
                break
        ids = list(seen)[: self.cfg.pool]
        return ids, np.array([seen[p] for p in ids])

    def price(self, pid: int) -> float:
        return self.data.prices.get(pid, 0.0)

    def margin(self, pid: int) -> float:
        return self.price(pid) * self.data.margin_rates.get(self.data.catalog.get(pid).department_id, 0.0)

    @cached_property
    def _reference_price(self) -> dict[int, float]:
        """Aisle -> median price of its products: the price a shopper judges a product against."""
        by_aisle: dict[int, list[float]] = {}
        for p in self.data.catalog.products:
            if (price := self.price(p.product_id)) > 0:
                by_aisle.setdefault(p.aisle_id, []).append(price)
        return {a: float(np.median(v)) for a, v in by_aisle.items()}

    def price_ratio(self, pid: int) -> float:
        """The product's price over its aisle's median (1.0 where either is unknown)."""
        ref, price = self._reference_price.get(self.data.catalog.get(pid).aisle_id, 0.0), self.price(pid)
        return price / ref if ref > 0 and price > 0 else 1.0


def build_world(data: Dataset, cfg: WorldConfig = WorldConfig(), seed: int = 0, progress: bool = True) -> World:
    data = with_business(data, cfg, seed)
    split = split_dataset(data, seed=seed)
    with tempfile.TemporaryDirectory(prefix="keystroke-world-") as tmp:
        artifact = load_artifact(build_artifact(split.train, Path(tmp) / "world", progress=progress))
    return World(data, cfg, split, Pipeline.from_artifact(artifact, cache_size=200_000), IntentModel(data.catalog, cfg),
                 seed=seed)


def _propensities(values: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in values.tolist()]  # NaN: the policy logs a list propensity only


def _scores(values) -> np.ndarray:
    return np.log(np.maximum(np.asarray(values, dtype=np.float64), 1e-12))  # (n,) log prior: PL's temperature is a power


class _Session:
    """One intent, typed, clicked, searched and maybe bought; returns its impressions and outcome."""

    def __init__(self, world: World, policy, user_id: int, profile: UserProfile, intent: Intent, sid: str,
                 rng: random.Random, nrng: np.random.Generator):
        self.w, self.policy, self.user_id, self.profile, self.intent = world, policy, user_id, profile, intent
        self.sid, self.rng, self.nrng = sid, rng, nrng
        self.exam = examination(world.cfg.pool, world.cfg.examination_eta)

    def _clicks(self, item_products: list[tuple[int, ...]], look: float) -> list[int]:
        """Positions clicked: each position is examined and clicked independently (position-based model)."""
        cfg, rng, catalog = self.w.cfg, self.rng, self.w.data.catalog
        if rng.random() >= look:
            return []
        return [pos for pos, products in enumerate(item_products)
                if rng.random() < self.exam[pos] and rng.random() < attraction(
                    relevance(self.intent, products, cfg), self.profile.affinity(products, catalog), cfg)]

    def run(self) -> tuple[list[Impression], int | None]:
        cfg, out = self.w.cfg, []
        states = typed_states(self.intent.phrase, self.rng, cfg.typo_rate)
        query = states[-1] if states else self.intent.phrase
        for step, text in enumerate(states):
            pool = self.w.suggestions(text)
            if not pool:
                continue
            r = self.policy.rank(_scores([s.score for s in pool]), cfg.k, self.nrng)
            shown = [pool[i] for i in r.order.tolist()]
            clicks = self._clicks([s.product_ids for s in shown], cfg.look_rate)
            out.append(Impression(f"{self.sid}-{step}", self.sid, self.user_id, "suggest", text, step, self.policy.name,
                                  float(r.list_propensity),
                                  tuple(ShownItem(p, s.text, s.product_ids, q, score=s.score, sources=s.sources)
                                        for p, (s, q) in enumerate(zip(shown, _propensities(r.item_propensity)))),
                                  tuple(clicks)))
            if clicks:
                query = shown[clicks[0]].text
                break
        return out + self._search(query, len(states)), self._bought

    def _search(self, query: str, step: int) -> list[Impression]:
        self._bought = None
        ids, scores = self.w.products(query)
        if not ids:
            return []
        cfg, intent = self.w.cfg, self.intent
        ranked_by = _scores(scores) if self.w.search_value is None else \
            np.asarray(self.w.search_value(query, self.user_id, ids, scores, self.sid), dtype=np.float64)  # (n,)
        r = self.policy.rank(ranked_by, cfg.k, self.nrng)
        shown = [ids[i] for i in r.order.tolist()]
        clicks = self._clicks([(p,) for p in shown], 1.0)
        carts, revenue, margin = [], 0.0, 0.0
        for pos in clicks:  # the shopper opens what caught their eye, top first, until one goes in the cart
            pid = shown[pos]
            buy = cfg.buy_target if pid == intent.target else cfg.buy_substitute if pid in intent.acceptable else cfg.buy_other
            buy = purchase_probability(buy, self.w.price_ratio(pid), cfg)
            if self.rng.random() < buy:
                self._bought, carts = pid, [pid]
                revenue, margin = self.w.price(pid), self.w.margin(pid)
                break
        return [Impression(f"{self.sid}-{step}", self.sid, self.user_id, "search", query, step, self.policy.name,
                           float(r.list_propensity),
                           tuple(ShownItem(p, f"product:{pid}", (pid,), q, score=round(float(scores[i]), 6))
                                 for p, (pid, q, i) in enumerate(zip(shown, _propensities(r.item_propensity),
                                                                     r.order.tolist()))),
                           tuple(clicks), tuple(carts), round(revenue, 4), round(margin, 4))]


def _user_orders(world: World, users: list[int]) -> dict[int, list[Order]]:
    by_user: dict[int, list[Order]] = {u: [] for u in users}
    for o in world.data.orders:
        if o.user_id in by_user:
            by_user[o.user_id].append(o)
    return by_user


@dataclass
class _Totals:
    """Counts a run accumulates; shards add up."""

    sessions: int = 0
    impressions: int = 0
    suggest_impressions: int = 0
    suggest_clicked: int = 0
    purchases: int = 0
    successes: int = 0
    reorder_purchases: int = 0
    revenue: float = 0.0
    margin: float = 0.0
    visits: int = 0
    returns: int = 0
    clicks_by_position: list = field(default_factory=list)
    shown_by_position: list = field(default_factory=list)
    purchase_aisles: Counter = field(default_factory=Counter)
    intent_aisles: Counter = field(default_factory=Counter)     # aisles of the real purchases replayed
    known_flag_purchases: int = 0      # purchases in sessions whose real line says reordered or not
    known_flag_reorders: int = 0

    def add_impression(self, imp: Impression) -> None:
        self.impressions += 1
        if imp.surface == "suggest":
            self.suggest_impressions += 1
            self.suggest_clicked += bool(imp.clicks)
            if len(imp.items) == len(self.shown_by_position):  # full lists only: short ones are a different mix
                for pos in range(len(imp.items)):
                    self.shown_by_position[pos] += 1
                for pos in imp.clicks:
                    self.clicks_by_position[pos] += 1

    def merge(self, other: "_Totals") -> "_Totals":
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, [x + y for x, y in zip(a, b)] if isinstance(a, list) else a + b)
        return self

    def summary(self) -> dict:
        n = max(self.sessions, 1)
        return {
            "sessions": self.sessions, "impressions": self.impressions, "visits": self.visits,
            "suggest_ctr": round(self.suggest_clicked / max(self.suggest_impressions, 1), 6),
            "ctr_by_position": [round(c / max(s, 1), 6) for c, s in zip(self.clicks_by_position, self.shown_by_position)],
            "purchase_rate": round(self.purchases / n, 6), "success_rate": round(self.successes / n, 6),
            "gtv_per_session": round(self.revenue / n, 6), "margin_per_session": round(self.margin / n, 6),
            "return_rate": round(self.returns / max(self.visits, 1), 6),
            "reorder_share": round(self.reorder_purchases / max(self.purchases, 1), 6),
            "reorder_share_known": round(self.known_flag_reorders / max(self.known_flag_purchases, 1), 6),
            "purchase_aisles": {str(k): v for k, v in sorted(self.purchase_aisles.items())},
            "intent_aisles": {str(k): v for k, v in sorted(self.intent_aisles.items())},
        }


def _shard(world: World, policy_name: str, sessions: int, seed: int, shard: int, users: list[int],
           path: Path | None, progress: bool) -> _Totals:
    """One independent stream of user chains; seeded by (seed, shard), so shards can run in parallel."""
    policy, cfg, catalog = make_policy(policy_name), world.cfg, world.data.catalog
    orders = _user_orders(world, users)
    t = _Totals(clicks_by_position=[0] * cfg.k, shown_by_position=[0] * cfg.k)
    pick = random.Random(f"users:{seed}:{shard}")
    writer = EventWriter(path) if path else None
    bar = tqdm(total=sessions, desc=f"simulate {policy.name}", unit="session", disable=not progress or shard > 0,
               file=sys.stderr)
    # A chain starts at a real order drawn uniformly, so sessions follow the real order lines; the
    # user's earlier real orders are their history, and while they keep returning the chain walks on
    # through their later real orders (it ends where the data does).
    starts = [(u, i) for u in users for i in range(len(orders[u]))]
    chain = 0
    try:
        while t.sessions < sessions:
            (user, visit_no), profile, chain = pick.choice(starts), UserProfile(), chain + 1
            history = orders[user]
            for past in history[:visit_no]:
                for pid in past.product_ids:
                    profile.add(pid, catalog.get(pid).aisle_id)
            while t.sessions < sessions and visit_no < len(history):
                order = history[visit_no]
                vid, successes, n, spent = f"{seed}.{shard}.{chain}.{visit_no}", 0, 0, 0.0
                for j, pid in enumerate(order.product_ids[: sessions - t.sessions]):
                    sid = f"{vid}.{j}"
                    rng, nrng = random.Random(sid), np.random.default_rng([seed, shard, chain, visit_no, j])
                    known = order.reordered[j] if j < len(order.reordered) else None
                    reorder = known if known is not None else pid in profile.bought
                    intent = world.intents.sample(pid, reorder, rng)
                    t.intent_aisles[catalog.get(pid).aisle_id] += 1
                    impressions, bought = _Session(world, policy, user, profile, intent, sid, rng, nrng).run()
                    n += 1
                    for imp in impressions:
                        t.add_impression(imp)
                        if writer:
                            writer.write(imp)
                    if bought is not None:
                        t.purchases += 1
                        t.revenue += world.price(bought)
                        spent += world.price(bought)
                        t.margin += world.margin(bought)
                        again = bought in profile.bought or (bought == pid and reorder)
                        t.reorder_purchases += again
                        if known is not None:
                            t.known_flag_purchases += 1
                            t.known_flag_reorders += again
                        t.purchase_aisles[catalog.get(bought).aisle_id] += 1
                        successes += bought in intent.acceptable
                bar.update(n)
                t.sessions += n
                t.successes += successes
                for pid in order.product_ids:  # the real history grows with the real order
                    profile.add(pid, catalog.get(pid).aisle_id)
                returned = random.Random(f"return:{vid}").random() < return_probability(successes / max(n, 1), cfg)
                t.visits += 1
                t.returns += returned
                if writer:
                    writer.write(Visit(user, vid, n, successes, round(spent, 4), returned))
                if not returned:
                    break
                visit_no += 1
    finally:
        bar.close()
        if writer:
            writer.close()
    return t


_FORKED: World | None = None  # the world a forked worker inherits instead of unpickling it


def _shard_in_worker(args) -> _Totals:
    return _shard(_FORKED, *args)


def simulate(world: World, policy_name: str, sessions: int, seed: int = 0, split: str = "train",
             out: Path | str | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Run `sessions` sessions in `workers` seeded shards; with `out`, write events-<shard>.jsonl.gz
    and manifest.json there. Returns the summary (plus sessions_per_second)."""
    global _FORKED
    make_policy(policy_name)  # fail before any work on an unknown policy
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    test = world.split.test_users
    users = sorted({o.user_id for o in world.data.orders if (o.user_id in test) == (split == "test")})
    if not users:
        raise ValueError(f"no users in the {split!r} split")
    out = Path(out) if out else None
    if out and any(out.glob("events-*.jsonl*")):
        raise ValueError(f"{out} already holds events; write to an empty folder")
    sizes = [sessions // workers + (i < sessions % workers) for i in range(workers)]
    jobs = [(policy_name, n, seed, i, users, out / f"events-{i:03d}.jsonl.gz" if out else None, progress)
            for i, n in enumerate(sizes)]
    started = time.time()
    if workers == 1:
        parts = [_shard(world, *jobs[0])]
    else:
        _FORKED = world
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_shard_in_worker, jobs)
        _FORKED = None
    total = parts[0]
    for p in parts[1:]:
        total.merge(p)
    elapsed = time.time() - started
    summary = total.summary()
    if out:  # timing has its own file: manifest.json and the events are reproducible byte for byte
        manifest = {"schema_version": SCHEMA_VERSION, "policy": make_policy(policy_name).name,
                    "policy_name": policy_name, "sessions": sessions, "workers": workers, "seed": seed, "world_seed": world.seed,
                    "split": split, "data": world.data.name, "artifact": world.pipeline.artifact_id,
                    "config": world.cfg.to_dict(), "summary": summary}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (out / "timing.json").write_text(json.dumps(
            {"seconds": round(elapsed, 2), "sessions_per_second": round(sessions / max(elapsed, 1e-9), 1)}))
    return {**summary, "sessions_per_second": round(sessions / max(elapsed, 1e-9), 1)}


def policy_value(world: World, policy_name: str, sessions: int, seed: int = 0, split: str = "test",
                 workers: int = 1) -> dict:
    """Ground truth for off-policy estimators: the policy's own on-policy rollouts, nothing logged."""
    summary = simulate(world, policy_name, sessions, seed=seed, split=split, workers=workers, progress=False)
    return {k: summary[k] for k in ("suggest_ctr", "purchase_rate", "success_rate", "gtv_per_session",
                                    "margin_per_session", "return_rate")}
