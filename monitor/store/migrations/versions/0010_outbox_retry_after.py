"""outbox retry_after_at: until when a receiver asked us to wait (its Retry-After)

A webhook receiver's Retry-After (429/503) is a wish of the receiver, not our backoff:
``monitor digest --send-now`` sends queued rows without waiting for their backoff, but
not before the time the receiver gave. Existing rows have none.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import monitor.store.schema

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retry_after_at", monitor.store.schema.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("retry_after_at")
