"""Database helpers that differ by vendor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import InterfaceError, OperationalError, migrations, models

# A lost database connection is worth a retry (Celery's autoretry_for, with backoff); any other error
# would fail the same way again.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class PrefixIndex(models.Index):
    """An index that keys only a prefix of long text columns on MySQL/MariaDB.

    InnoDB keys are limited to 3072 bytes, which a ``varchar(1024)`` in utf8mb4 exceeds on its own.
    PostgreSQL and SQLite index the whole column; on MySQL/MariaDB the columns named in
    ``mysql_prefix_lengths`` are indexed by their first N characters, which still narrows an equality
    lookup to a handful of rows.
    """

    def __init__(self, *args: Any, mysql_prefix_lengths: dict[str, int], **kwargs: Any) -> None:
        self.mysql_prefix_lengths = dict(mysql_prefix_lengths)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[str, Sequence[Any], dict[str, Any]]:
        path, args, kwargs = super().deconstruct()
        kwargs["mysql_prefix_lengths"] = self.mysql_prefix_lengths
        return path, args, kwargs

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor != "mysql":
            return super().create_sql(model, schema_editor, using=using, **kwargs)
        fields = [model._meta.get_field(name) for name, _ in self.fields_orders]
        col_suffixes = [
            (f"({self.mysql_prefix_lengths[name]})" if name in self.mysql_prefix_lengths else "")
            + (f" {order}" if order else "")
            for name, order in self.fields_orders
        ]
        return schema_editor._create_index_sql(
            model,
            fields=fields,
            name=self.name,
            using=using,
            db_tablespace=self.db_tablespace,
            col_suffixes=col_suffixes,
            **kwargs,
        )


# SQLSTATE 40P01 (PostgreSQL) and error 1213 (MySQL/MariaDB): the database chose this transaction as the
# victim of a deadlock and rolled it back; running the transaction again is the documented remedy.
_DEADLOCK_SQLSTATES = frozenset({"40P01", "40001"})
_MYSQL_DEADLOCK = 1213


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` is a database deadlock (or serialization failure) that a retry resolves."""
    cause = exc.__cause__ or exc
    if getattr(cause, "sqlstate", None) in _DEADLOCK_SQLSTATES:
        return True
    args: tuple[Any, ...] = getattr(cause, "args", ())
    return bool(args) and args[0] == _MYSQL_DEADLOCK


def content_types_move(*, models: tuple[str, ...], old_app: str, new_app: str) -> Any:
    """A ``RunPython`` operation that hands ``models``' content types from ``old_app`` to ``new_app``.

    For models moved between apps with their tables: their permissions, the groups and users holding
    them, and the admin's history point at the content type's id, so they follow the models. Reversible.
    A content type the new app already has (a database migrated from scratch) is left alone.
    """

    def move(source: str, target: str) -> Any:
        def run(apps: Any, schema_editor: Any) -> None:
            content_types = apps.get_model("contenttypes", "ContentType").objects.using(
                schema_editor.connection.alias
            )
            for model in models:
                if not content_types.filter(app_label=target, model=model).exists():
                    content_types.filter(app_label=source, model=model).update(app_label=target)

        return run

    return migrations.RunPython(move(old_app, new_app), move(new_app, old_app))
