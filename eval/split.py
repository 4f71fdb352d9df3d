"""The one train/test split every offline evaluation uses: held out by user, then by time.

A seeded hash of the user id picks the held-out users among those with at least two orders; each
one's last order (highest order_number) is a target, and everything else is training data. The
held-out users' earlier orders stay in training, so personalised sources can use their history,
but no target order is ever seen by an index built from `Split.train`.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, replace

from suggest.types import Dataset, Order

__all__ = ["Split", "split_dataset", "held_out"]


@dataclass(frozen=True)
class Split:
    train: Dataset                # the input with the target orders removed; catalog, logs and stock kept
    targets: tuple[Order, ...]    # one per held-out user, sorted by user_id
    test_users: frozenset[int]


def held_out(user_id: int, test_fraction: float, seed: int) -> bool:
    """Whether the hash of (seed, user) falls in the held-out fraction; stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def split_dataset(data: Dataset, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Hold out about `test_fraction` of the users with >= 2 orders; their last order is the target."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction!r}")
    by_user: dict[int, list[Order]] = defaultdict(list)
    for order in data.orders:
        by_user[order.user_id].append(order)
    targets = []
    for user_id, orders in sorted(by_user.items()):
        if len(orders) >= 2 and held_out(user_id, test_fraction, seed):
            # order_id breaks ties: the patchwork real data can repeat an order_number for a user
            targets.append(max(orders, key=lambda o: (o.order_number, o.order_id)))
    target_ids = {o.order_id for o in targets}
    train = replace(data, orders=tuple(o for o in data.orders if o.order_id not in target_ids))
    return Split(train, tuple(targets), frozenset(o.user_id for o in targets))
