"""outbox kind: mail or webhook

Webhook deliveries go through the same outbox as mail (one transaction with their
delivery records, retried with backoff); ``kind`` tells the two senders apart. Existing
rows are mail.

Revision ID: 0009
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="mail")
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("kind")
