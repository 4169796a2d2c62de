"""The schema. Alembic migrations (storage/migrations) create it; this module
is what the code reads and what autogenerate compares against."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Integer primary keys that autoincrement on both dialects: BIGINT on
# PostgreSQL, INTEGER (the rowid alias) on SQLite.
SeqId = BigInteger().with_variant(Integer(), "sqlite")

channels = Table(
    "channels",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("webhook_url", Text),
    Column("webhook_secret", String(128)),
    Column("created_at", Double, nullable=False),
    # When set, inbound requests must carry a valid X-Tierdesk-Signature.
    Column("require_signature", Boolean, nullable=False, server_default=text("false")),
    # A disabled channel's tokens are revoked and its requests refused.
    Column("disabled_at", Double),
    # While a secret rotation overlaps, the old secret still verifies (and
    # outbound requests are signed with both) until this time.
    Column("previous_webhook_secret", String(128)),
    Column("previous_secret_until", Double),
    # How the channel reaches customers (tierdesk/channels): "webhook" (the
    # channel's own integration, replies by signed webhook), "widget" (the
    # built-in web chat) or "matrix" (the Matrix bridge).
    Column("kind", String(16), nullable=False, server_default=text("'webhook'")),
    # A webhook channel that also wants bot answers, "connecting you to a
    # person" and rating requests delivered, not only agent replies.
    Column("notices", Boolean, nullable=False, server_default=text("false")),
)

# Where a channel's bridge has read up to (the Matrix sync token), written
# once what was read is committed: a restarted bridge goes on from there.
channel_cursors = Table(
    "channel_cursors",
    metadata,
    Column("channel_id", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
)

credentials = Table(
    "credentials",
    metadata,
    # sha256 of the token: a leaked database does not leak usable tokens.
    Column("token_hash", String(64), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("subject_id", String(64)),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double),
    Index("ix_credentials_subject", "role", "subject_id"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("skills", JSON, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("open_count", Integer, nullable=False, server_default=text("0")),
    Column("idle_since", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    # A disabled agent is never assigned, cannot sign in, keeps their history.
    Column("disabled_at", Double),
    # Presence (router/attendance.py): an instance holding one of the
    # agent's connections keeps present_until ahead of now; once it lapses
    # the leading instance sets presence_lost_at until they are back.
    Column("present_until", Double),
    Column("presence_lost_at", Double),
    Column("missed_reservations", Integer, nullable=False, server_default=text("0")),
    # Per skill, the agent's level (1-5); a skill not listed is at 1.
    Column("skill_levels", JSON, nullable=False, server_default=text("'{}'")),
    CheckConstraint("capacity >= 1", name="capacity_positive"),
    CheckConstraint("open_count >= 0", name="open_count_nonnegative"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("channel_id", String(64), nullable=False),
    Column("external_id", String(200), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("customer_name", String(200)),
    Column("customer_vip", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("bot_streak", Integer, nullable=False),
    Column("handoff_count", Integer, nullable=False),
    Column("handoff_id", String(64)),
    Column("agent_id", String(64)),
    # Optimistic concurrency between instances (router/model.py Conversation.version).
    Column("version", Integer, nullable=False, server_default=text("1")),
    # The customer's rating of the current episode (or the one just ended):
    # a repeated rating is not counted again, a different one replaces it.
    Column("rating", Integer),
    # The skill whose full queue the customer was offered to leave a
    # message for: their next message is that message (router/queue_limits.py).
    Column("message_offer", String(100)),
    # The metric tally after the latest change (router/rollups.py,
    # ConversationTally.snapshot(), JSON): loading the conversation restores
    # it from here, not by replaying its events. NULL (rows written before
    # 0022): replayed.
    Column("tally", Text),
    UniqueConstraint("channel_id", "external_id"),
    Index("ix_conversations_status_updated", "status", "updated_at"),
    # A customer's earlier conversations, shown beside the one an agent holds.
    Index("ix_conversations_customer", "channel_id", "customer_id"),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("conversation_id", String(64), nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("skill", String(100), nullable=False),
    Column("requested_at", Double, nullable=False),
    Column("vip", Boolean, nullable=False),
    Column("agent_id", String(64)),
    Column("assigned_at", Double),
    Column("first_reply_at", Double),
    Column("resolved_at", Double),
    # How much of an agent's capacity it takes, and what it took from the
    # agent holding it (router/model.py Handoff).
    Column("weight", Integer, nullable=False, server_default=text("1")),
    Column("slots", Integer, nullable=False, server_default=text("1")),
    # A message the customer left when the skill's queue was full: routed
    # after the customers waiting live.
    Column("left_message", Boolean, nullable=False, server_default=text("false")),
    UniqueConstraint("conversation_id", "seq"),
    # At most one open handoff per conversation: a conversation can never be
    # held by two agents, whatever the application does.
    Index(
        "uq_handoffs_one_open_per_conversation",
        "conversation_id",
        unique=True,
        sqlite_where=text("resolved_at IS NULL"),
        postgresql_where=text("resolved_at IS NULL"),
    ),
    Index(
        "ix_handoffs_open_by_agent",
        "agent_id",
        sqlite_where=text("resolved_at IS NULL"),
        postgresql_where=text("resolved_at IS NULL"),
    ),
    # The staffing forecast and the simulator's replay read chosen days.
    Index("ix_handoffs_requested_at", "requested_at"),
    # The expected wait told to a customer: how fast a skill's queue was
    # taken lately (router/estimates.py).
    Index("ix_handoffs_skill_assigned_at", "skill", "assigned_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("channel_id", String(64), nullable=False),
    Column("conversation_id", String(64), nullable=False),
    Column("sender", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("at", Double, nullable=False),
    Column("external_id", String(200)),
    Column("agent_id", String(64)),
    Column("tier", String(8)),
    Column("intent", String(100)),
    Column("confidence", Double),
    Column("in_reply_to", String(64)),
    Column("response", JSON),
    # For inbound messages: what happened ("answer", "forwarded", or the
    # handoff reason), and what the customer made of the bot's answer:
    # "confirmed" (good rating or marked resolved), or a miss ("thumbs_down",
    # "asked_for_person" right after it).
    Column("outcome", String(32)),
    Column("verdict", String(32)),
    # When the first reply of the message's tier came (bot answer or agent
    # reply): what is unreplied and recent is "pending" in the metrics.
    Column("replied_at", Double),
    # Idempotency: a channel's message id is stored once (NULLs, for replies, don't clash).
    UniqueConstraint("channel_id", "external_id"),
    Index("ix_messages_conversation_at", "conversation_id", "at"),
    Index("ix_messages_at", "at"),
    Index("ix_messages_outcome_at", "outcome", "at"),
    Index(
        "ix_messages_unreplied_at",
        "at",
        sqlite_where=text("replied_at IS NULL AND external_id IS NOT NULL"),
        postgresql_where=text("replied_at IS NULL AND external_id IS NOT NULL"),
    ),
)

metric_rollups = Table(
    "metric_rollups",
    metadata,
    # Hourly counters and histogram bins per channel (router/rollups.py),
    # added to by every group commit.
    Column("hour", Double, primary_key=True),
    Column("channel_id", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", Double, nullable=False),
)

metric_histograms = Table(
    "metric_histograms",
    metadata,
    # Response-time histograms per hour, channel and statistic, in
    # the compact form of router/rollups.py (the span of occupied bins, and
    # the least and greatest sample).
    Column("hour", Double, primary_key=True),
    Column("channel_id", String(64), primary_key=True),
    Column("stat", String(32), primary_key=True),
    # The instance whose increments these are ('' on SQLite, which has one):
    # each PostgreSQL instance writes only its own rows, so none waits on
    # another's row lock, and each knows its rows' counts without reading
    # them (storage/pg_writer.py). Readers add the rows up.
    Column("writer", String(64), primary_key=True, server_default=""),
    Column("counts", LargeBinary, nullable=False),
)

faq_labels = Table(
    "faq_labels",
    metadata,
    # What an agent or supervisor said a customer message was: an FAQ
    # intent's question (intent_id), or no FAQ at all (intent_id NULL).
    # Training and `faq eval --traffic` read them; one label a message, the
    # latest wins.
    Column("message_id", String(64), primary_key=True),
    Column("intent_id", String(100)),
    Column("labelled_by", String(64), nullable=False),
    Column("labelled_at", Double, nullable=False),
    Index("ix_faq_labels_labelled_at", "labelled_at"),
)

faq_answers = Table(
    "faq_answers",
    metadata,
    # Answer edits made through the API: they override the knowledge base
    # file's answer and go live without retraining, on every instance.
    Column("intent_id", String(100), primary_key=True),
    # The BCP 47 primary subtag of the answer's language.
    Column("language", String(16), primary_key=True, server_default="en"),
    Column("answer", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("seq", SeqId, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("channel_id", String(64), nullable=False),
    Column("conversation_id", String(64), nullable=False),
    Column("message_id", String(64)),
    Column("handoff_id", String(64)),
    Column("agent_id", String(64)),
    Column("data", JSON, nullable=False),
    Index("ix_events_at", "at"),
    Index("ix_events_conversation", "conversation_id", "seq"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(100), nullable=False, unique=True),
    Column("channel_id", String(64), nullable=False),
    Column("conversation_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("status", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", Double, nullable=False),
    Column("last_error", Text),
    Column("delivered_at", Double),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_conversation", "conversation_id", "id"),
)

# People who sign in to the console (tierdesk/console). An agent's account
# points at the agent it works as; supervisors and admins have none.
people = Table(
    "people",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(254), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    # argon2id, with its parameters and salt (tierdesk/passwords.py).
    Column("password_hash", String(255), nullable=False),
    Column("agent_id", String(64)),
    Column("created_at", Double, nullable=False),
    Column("disabled_at", Double),
    UniqueConstraint("email"),
    Index("ix_people_agent", "agent_id"),
)

# Signed-in browsers. Only the sha256 of the cookie's value is kept, as for
# tokens: a leaked database does not let anyone in.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("person_id", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double),
    Index("ix_sessions_person", "person_id"),
)

# The SLA monitor's alerts (router/alerts.py): at most one open per key.
alerts = Table(
    "alerts",
    metadata,
    Column("id", SeqId, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("subject", JSON, nullable=False),
    Column("data", JSON, nullable=False),
    Column("raised_at", Double, nullable=False),
    Column("cleared_at", Double),
    Index("ix_alerts_open_key", "key", unique=True, postgresql_where=text("cleared_at IS NULL"),
          sqlite_where=text("cleared_at IS NULL")),
)
