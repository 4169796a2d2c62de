"""router/ids.py: unique, creation-ordered, and distinct across processes."""

from __future__ import annotations

import subprocess
import sys

from router.ids import new_id


def test_ids_are_unique_and_sort_by_creation() -> None:
    ids = [new_id("msg") for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(i.startswith("msg_") for i in ids)


def test_two_processes_do_not_share_ids() -> None:
    code = "from router.ids import new_id; print(new_id('x'))"
    tails = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=".").stdout.strip()[-12:] for _ in range(2)}
    assert len(tails) == 2
