"""Identifiers made in process, so a use case needs no database round trip."""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    # Time-ordered (48-bit milliseconds) then random: ids sort by creation,
    # which keeps B-tree inserts local, and never collide across instances.
    ms = int(time.time() * 1000) & 0xFFFFFFFFFFFF
    return f"{prefix}_{ms:012x}{os.urandom(8).hex()}"
