"""Routing, tracking and metrics rules: plain Python, no I/O.

The domain model (conversations, handoffs, agents, the waiting queue), the
routing policy, the handoff policy, the tracker's events and the tiered
metrics live here, together with the ports (repository, unit of work,
classifier, clock) and the use cases that drive them. Adapters for HTTP and
SQL live elsewhere and depend on this package, never the other way round.
"""
