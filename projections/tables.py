"""The tables a projection owns, as DDL with a `{table}` placeholder: a rebuild creates the same
table under a side name, fills it, and switches it in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    """`ddl` creates the table and its indexes under the name given for `{table}`; leave index
    names to PostgreSQL (`CREATE INDEX ON {table} ...`) so a side copy's never collide.
    `subject_column` names whose rows they are: erasure deletes them."""

    name: str
    ddl: tuple[str, ...]
    subject_column: str | None = "subject_id"

    def create(self, physical: str) -> list[str]:
        return [statement.format(table=physical) for statement in self.ddl]


SUBJECT_ROWS = (
    "CREATE TABLE {table} ("
    " subject_id uuid PRIMARY KEY,"
    " key_version integer NOT NULL,"
    " position bigint NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT now(),"
    " body bytea NOT NULL)",
)
"""One row per subject: the document sealed with the subject's key (`key_version`), bound to its
table and subject by the associated data. Clear columns are non-personal."""
