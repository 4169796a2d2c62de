"""Channels: how customers reach the desk and how its answers reach them.

Every channel is an adapter on one port (``port.py``): inbound, a customer
message, a rating, the customer leaving, all through the Desk's use cases
(``inbound.py``); outbound, a bot answer, an agent reply, "connecting you
to a person" with the queue position and expected wait, an out-of-hours
notice, a rating request, typing. What must not be lost goes through the
transactional outbox and the delivery worker (tierdesk/delivery.py), which
hands each item to the adapter of its channel's kind:

- ``webhook.py``: the channel's own integration calls the HTTP API and gets
  signed webhooks (the original channel);
- ``widget.py``: the built-in web chat widget, one ``<script>`` tag;
- ``matrix.py``: a bridge to Matrix rooms.

docs/channels.md shows how to write another.
"""
