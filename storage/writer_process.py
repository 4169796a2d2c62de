"""The SQLite writer's own process (started by storage/sqlite_writer.py).

It reads frames from stdin: first where and how to write (path,
synchronous, the statements), then one batch of rows per frame. It answers
"ready" once its connection is open, then each batch once its transaction
is committed, or with the exception that stopped it. It ends when stdin
does: when the server closes the pipe, or dies.

A frame is a 4-byte big-endian length and a pickle. The pipe joins a
server to the child it started, nothing else.
"""

from __future__ import annotations

import pickle
import signal
import struct
import sys
from typing import Any, BinaryIO

_LENGTH = struct.Struct("!I")
HEADER_SIZE = _LENGTH.size


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def length(header: bytes) -> int:
    (n,) = _LENGTH.unpack(header)
    return n


def unframe(data: bytes) -> Any:
    return pickle.loads(data)


def _read(stream: BinaryIO) -> Any | None:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    return unframe(stream.read(length(header)))


def _answer(outcome: tuple[str, Any]) -> bytes:
    try:
        return frame(outcome)
    except Exception:  # noqa: BLE001 - an exception that does not pickle is sent as its text
        return frame(("raised", RuntimeError(repr(outcome[1]))))


def main() -> None:
    # Stopping is the server's business: Ctrl-C in a terminal or a service
    # manager's SIGTERM reach the whole process group, and the server then
    # writes what is queued before it closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from .sqlite_batch import SqliteBatchWriter, commit_batch, open_connection

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing printed by accident can get into the answers
    setup = _read(requests)
    if setup is None:
        return
    path, synchronous, texts = setup
    try:
        conn = open_connection(path, synchronous)
    except Exception as exc:  # noqa: BLE001 - the server reports it
        answers.write(_answer(("raised", exc)))
        answers.flush()
        return
    writer = SqliteBatchWriter(texts)
    answers.write(frame(("ready", None)))
    answers.flush()
    try:
        while (rows := _read(requests)) is not None:
            try:
                outcome: tuple[str, Any] = ("written", commit_batch(conn, writer, rows))
            except Exception as exc:  # noqa: BLE001 - the server decides what each one means
                outcome = ("raised", exc)
            try:
                answers.write(_answer(outcome))
                answers.flush()
            except BrokenPipeError:
                return  # the server is gone: nobody awaits the answer
    finally:
        conn.close()


if __name__ == "__main__":
    main()
