"""chat message cut short

Revision ID: 44e4b10bb458
Revises: 4b08f6d9d323
Create Date: 2026-12-07 19:40:56.905751
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '44e4b10bb458'
down_revision: str | None = '4b08f6d9d323'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD and DROP COLUMN, which SQLite does in place: batch mode would rebuild the
# table, rewriting every message for one column.


def upgrade() -> None:
    op.add_column(
        'chat_messages',
        sa.Column('cut_short', sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column('chat_messages', 'cut_short')
