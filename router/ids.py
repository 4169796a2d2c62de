"""Identifiers made in process, so a use case needs no database round trip."""

from __future__ import annotations

import itertools
import os
import time

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_id(prefix: str) -> str:
    # Real-time milliseconds, then a per-process counter, then random bits:
    # ids sort by creation (within a process exactly, which the queue relies
    # on to break ties between equal timestamps), keep B-tree inserts local,
    # and do not collide across instances.
    ms = int(time.time() * 1000) & 0xFFFFFFFFFFFF
    return f"{prefix}_{ms:012x}{next(_counter) & 0xFFFFFFFF:08x}{os.urandom(6).hex()}"
