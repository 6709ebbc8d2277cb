"""item language: items.lang, detected when an item is stored (monitor.lang)

Existing items get their language detected here, from the text already stored.

Revision ID: 0005
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    from monitor.lang import detect

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lang", sa.String(16), nullable=True))
    items = sa.table(
        "items",
        sa.column("id", sa.Integer),
        sa.column("title", sa.Text),
        sa.column("summary", sa.Text),
        sa.column("content", sa.Text),
        sa.column("lang", sa.String(16)),
    )
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(items.c.id, items.c.title, items.c.summary, items.c.content)
            .where(items.c.id > last)
            .order_by(items.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        updates = [
            {"row_id": r.id, "lang": lang}
            for r in rows
            if (lang := detect(r.title or "", r.summary or "", r.content or "")) is not None
        ]
        if updates:
            conn.execute(
                items.update().where(items.c.id == sa.bindparam("row_id")),
                updates,
            )


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("lang")
