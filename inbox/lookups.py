"""`field__member_of=<queryset>`: membership in a subquery's result, planned as an index scan.

PostgreSQL plans `x IN (SELECT ...)` inside an OR as a per-row hashed filter, which walks
the whole table. `x = ANY(ARRAY(SELECT ...))` evaluates the subquery once and lets the
planner use the index on `x` even under OR. Other databases (the SQLite default) get `IN`.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, ForeignObject, Lookup
from django.db.models.sql.compiler import SQLCompiler


@ForeignObject.register_lookup
@Field.register_lookup
class MemberOf(Lookup):
    lookup_name = "member_of"
    prepare_rhs = False

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        params = [*lhs_params, *rhs_params]
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(ARRAY{rhs})", params
        return f"{lhs} IN {rhs}", params
