"""Identifiers made in process, so a use case needs no database round trip."""

from __future__ import annotations

import itertools
import os
import time

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
# Drawn once per process: a system call per id (os.urandom) was a visible
# share of a message's CPU, and uniqueness across instances only needs the
# processes to differ.
_PROCESS_TAG = os.urandom(6).hex()


def new_id(prefix: str) -> str:
    # Real-time milliseconds, then a per-process counter, then the process's
    # random tag: ids sort by creation (within a process exactly, which the
    # queue relies on to break ties between equal timestamps), keep B-tree
    # inserts local, and do not collide across instances.
    ms = int(time.time() * 1000) & 0xFFFFFFFFFFFF
    return f"{prefix}_{ms:012x}{next(_counter) & 0xFFFFFFFF:08x}{_PROCESS_TAG}"
