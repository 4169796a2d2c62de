"""The garbage collector's policy (tierdesk/heap.py). The collector's state
belongs to the whole process, so each case runs in a Python of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import gc, json, weakref
from tierdesk.heap import HeapPolicy

class Node:
    pass

def survivor(cyclic):
    n = Node()
    if cyclic:
        n.me = n
    ref = weakref.ref(n)
    gc.collect(1)  # a middle collection it lives through
    return n, ref
"""


def run(body: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PRELUDE + body], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_cycle_that_outlived_a_middle_collection_waits_for_reclaim() -> None:
    r = run("""
policy = HeapPolicy()
policy.settle()
n, ref = survivor(cyclic=True)
del n
gc.collect()
after_full = ref() is not None
got = policy.reclaim()
print(json.dumps({"after_full": after_full, "after_reclaim": ref() is not None,
                  "collected": got.collected, "frozen": got.frozen}))
""")
    assert r["after_full"], "a frozen cycle is out of the collector's sight until reclaim"
    assert not r["after_reclaim"]
    assert r["collected"] >= 1
    assert r["frozen"] > 0  # what survived the reclaim is frozen again


def test_without_the_policy_a_full_collection_frees_the_same_cycle() -> None:
    r = run("""
policy = HeapPolicy(freeze_survivors=False)
policy.settle()
n, ref = survivor(cyclic=True)
del n
gc.collect()
print(json.dumps({"after_full": ref() is not None}))
""")
    assert not r["after_full"]


def test_a_frozen_object_without_a_cycle_goes_with_its_last_reference() -> None:
    # An evicted conversation: frozen long ago, freed the moment it is dropped.
    r = run("""
policy = HeapPolicy()
policy.settle()
n, ref = survivor(cyclic=False)
before = gc.get_freeze_count()
del n
print(json.dumps({"alive": ref() is not None, "fewer_frozen": gc.get_freeze_count() < before}))
""")
    assert r == {"alive": False, "fewer_frozen": True}


def test_a_full_cache_starves_young_collections_and_the_timer_does_not() -> None:
    # Each new object frees a frozen one, as a full conversation cache does:
    # CPython's allocation count stays near zero and no young collection
    # runs, however many objects pile up unscanned. collect_young scans them
    # and freezes the survivors.
    r = run("""
policy = HeapPolicy()
old = [Node() for _ in range(20_000)]
policy.settle()
young = []
for i in range(20_000):
    old.pop()
    young.append(Node())
piled = len(gc.get_objects(0)) + len(gc.get_objects(1))
policy.collect_young()
left = len(gc.get_objects(0)) + len(gc.get_objects(1))
print(json.dumps({"piled": piled, "left": left}))
""")
    assert r["piled"] >= 19_000, r  # CPython's own schedule never looked at them
    assert r["left"] < 100, r


def test_remove_puts_the_collector_back() -> None:
    r = run("""
before = gc.get_threshold(), len(gc.callbacks)
policy = HeapPolicy()
policy.settle()
during = gc.get_threshold(), len(gc.callbacks)
policy.remove()
after = gc.get_threshold(), len(gc.callbacks)
print(json.dumps({"before": before, "during": during, "after": after, "frozen": gc.get_freeze_count()}))
""")
    assert r["during"] != r["before"]
    assert r["after"] == r["before"]
    assert r["frozen"] == 0


def test_the_frozen_count_is_taken_at_settle_and_reclaim_not_on_each_read() -> None:
    r = run("""
policy = HeapPolicy()
before = policy.frozen_counted
policy.settle()
at_settle = policy.frozen_counted
exact_at_settle = gc.get_freeze_count()
keep = [survivor(cyclic=False) for _ in range(500)]  # frozen by the middle collections
between = policy.frozen_counted
got = policy.reclaim()
print(json.dumps({"before": before, "at_settle": at_settle, "exact_at_settle": exact_at_settle,
                  "between": between, "after_reclaim": policy.frozen_counted, "reported": got.frozen,
                  "exact_after_reclaim": gc.get_freeze_count()}))
""")
    assert r["before"] == 0
    assert r["at_settle"] == r["exact_at_settle"] > 0
    assert r["between"] == r["at_settle"]  # reading it walks nothing, so it moves only when counted
    assert r["after_reclaim"] == r["reported"] == r["exact_after_reclaim"] >= r["at_settle"] + 500
