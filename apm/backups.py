"""Database backups and restores (docs/operations.md, "Backups and restore").

Built on django-dbbackup: its connectors run ``pg_dump --format=custom``/``pg_restore``, ``mysqldump``/
``mysql`` and SQLite's online backup API, and its file names and metadata are the ones its own
``dbrestore`` and ``listbackups`` commands read. APM adds what a restore drill needs and the library
leaves to the operator:

* a restore checks the file before touching the database (a truncated or foreign file is refused, with
  the reason, and the database is left as it was) and refuses a database that already holds tables
  unless told to replace them;
* nothing is half restored: PostgreSQL restores in one transaction, SQLite swaps in the new file at once
  (with the old file's mode and owner), and MariaDB (whose DDL cannot be rolled back) restores only into
  an empty database and drops what a failed restore created there: ``--force`` is refused on MariaDB;
* a backup is written whole or not at all (a failed write deletes its partial file, and a dump counts as
  a backup only once its metadata, written last, is there), readable by its owner only (it holds password
  hashes and webhook secrets);
* retention and "the newest backup" look only at the backups of one database alias and one deployment
  (``<alias>-<APM_BACKUP_NAME>-<date>``), never at another's in the same storage;
* the MariaDB password travels in ``MYSQL_PWD``, never on a command line that ``ps`` shows;
* ``backup_create`` keeps the newest ``APM_BACKUP_KEEP`` backups and says which it deleted.

The git mirrors of ``APM_WORKSPACE`` are never backed up: they are a cache that the next ingestion
rebuilds from each repository's source.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from dbbackup import utils as dbbackup_utils
from dbbackup.db.base import get_connector
from dbbackup.db.exceptions import CommandConnectorError
from dbbackup.db.mysql import MysqlDumpConnector
from dbbackup.db.postgresql import PgDumpBinaryConnector
from dbbackup.db.sqlite import SqliteBackupConnector
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import DEFAULT_DB_ALIAS, connections

from apm.cache import EPOCH_KEY, cache_invalidate

try:  # the bucket's client, when django-storages' S3 backend is installed (it is in the image)
    from botocore.exceptions import BotoCoreError, ClientError

    STORAGE_ERRORS: tuple[type[Exception], ...] = (OSError, BotoCoreError, ClientError)
except ImportError:  # pragma: no cover (botocore is in requirements/base.txt)
    STORAGE_ERRORS = (OSError,)

# Seconds a check of a backup file (pg_restore --list) may take: it reads the archive's table of contents.
CHECK_TIMEOUT = 300
# Bytes read at each end of a MariaDB dump to recognise its header and its last line.
DUMP_EDGE_BYTES = 4096


class BackupError(Exception):
    """A backup or restore that did not happen, with the reason in words an operator can act on."""


# An archive of the export files fails by a write to the backup storage or a read of the export files.
EXPORT_ERRORS: tuple[type[Exception], ...] = (BackupError, *STORAGE_ERRORS)


# --- Connectors (named in settings.DBBACKUP_CONNECTOR_MAPPING, so dbbackup's commands use them too) ---


class PostgresConnector(PgDumpBinaryConnector):
    """``pg_dump --format=custom`` and ``pg_restore --single-transaction``.

    The restored objects belong to the user that restores (``--no-owner --no-privileges``): a disaster
    recovery restores into a new server whose roles need not match the old one's.
    """

    pg_options = ["--no-owner", "--no-privileges"]

    def check_dump(self, path: Path) -> None:
        """Refuse a file pg_restore cannot read (reading its table of contents touches no database)."""
        try:
            result = subprocess.run(  # noqa: S603 (an argument list, the file after --)
                ["pg_restore", "--list", "--", str(path)],  # noqa: S607 (the client on PATH, as dbbackup runs it)
                capture_output=True,
                timeout=CHECK_TIMEOUT,
                check=False,
            )
        except FileNotFoundError as exc:
            raise BackupError("pg_restore is not installed (Debian: postgresql-client)") from exc
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip()
            raise BackupError(f"not a PostgreSQL backup pg_restore can read: {reason}")


class MariaDBConnector(MysqlDumpConnector):
    """``mysqldump --single-transaction`` and ``mysql``, the password in ``MYSQL_PWD``.

    dbbackup's own MySQL connector passes ``--password=`` on the command line, where every user of the
    machine can read it; and without ``--single-transaction`` its dump is not one consistent snapshot
    of InnoDB tables written to during the dump.
    """

    extension = "mariadb.sql"

    def _connection_arguments(self) -> list[str]:
        arguments = ["--default-character-set=utf8mb4"]
        for option, key in (("--host", "HOST"), ("--port", "PORT"), ("--user", "USER")):
            if self.settings.get(key):
                arguments.append(f"{option}={self.settings[key]}")
        return arguments

    def _password_environment(self) -> dict[str, str]:
        password = self.settings.get("PASSWORD")
        return {"MYSQL_PWD": str(password)} if password else {}

    def _create_dump(self) -> Any:
        name = self.settings["NAME"]
        arguments = [
            self.dump_cmd,
            *self._connection_arguments(),
            "--single-transaction",
            "--quick",
            "--hex-blob",
            *(f"--ignore-table={name}.{table}" for table in self.exclude),
            "--",
            name,
        ]
        stdout, _stderr = self.run_command(
            shlex.join(arguments), env={**self.dump_env, **self._password_environment()}
        )
        return stdout

    def _restore_dump(self, dump: IO[bytes]) -> Any:
        connection = self.connection
        tables_before = set(connection.introspection.table_names())
        connection.close()
        arguments = [self.restore_cmd, *self._connection_arguments(), "--", self.settings["NAME"]]
        try:
            return self.run_command(
                shlex.join(arguments), stdin=dump, env={**self.restore_env, **self._password_environment()}
            )
        except CommandConnectorError:
            # MariaDB commits every CREATE TABLE as it runs: what a failed restore created in a database
            # that was empty is dropped, so the database is empty again, not half restored.
            if not tables_before:
                _tables_drop(self.database_name)
            raise

    def check_dump(self, path: Path) -> None:
        """Refuse a file that is not a whole mysqldump (its last line says the dump completed)."""
        size = path.stat().st_size
        with path.open("rb") as dump:
            head = dump.read(DUMP_EDGE_BYTES)
            dump.seek(max(0, size - DUMP_EDGE_BYTES))
            tail = dump.read()
        if b"-- MariaDB dump" not in head and b"-- MySQL dump" not in head:
            raise BackupError("not a MariaDB/MySQL dump (no mysqldump header)")
        if b"-- Dump completed" not in tail:
            raise BackupError("the dump is incomplete (it does not end with mysqldump's last line)")


class SQLiteConnector(SqliteBackupConnector):
    """SQLite's online backup API (consistent while APM writes), restored by swapping the file in at once.

    dbbackup's connector writes the backup over the database file in place: a failure half-way leaves a
    broken database, and a write-ahead log left beside it from the old database would be replayed onto
    the new one. Here the backup is copied beside the database, checked, and renamed over it.
    """

    def _database_path(self) -> Path:
        name = str(self.connection.settings_dict["NAME"])
        if not name or name == ":memory:" or name.startswith("file:"):
            raise BackupError(f"SQLite database {name!r} is not a file: there is nothing to restore into")
        return Path(name)

    def check_dump(self, path: Path) -> None:
        """Refuse a file that is not a sound SQLite database."""
        with path.open("rb") as dump:
            if dump.read(16) != b"SQLite format 3\x00":
                raise BackupError("not an SQLite database")
        try:
            with contextlib.closing(sqlite3.connect(path)) as database:
                verdict = database.execute("PRAGMA integrity_check").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"the SQLite database is damaged: {exc}") from exc
        if not verdict or verdict[0] != "ok":
            raise BackupError(f"the SQLite database is damaged: {verdict[0] if verdict else 'no answer'}")

    def restore_dump(self, dump: IO[bytes]) -> None:
        target = self._database_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) as new:
            staged = Path(new.name)
            try:
                while chunk := dump.read(1 << 20):
                    new.write(chunk)
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
        try:
            self.check_dump(staged)
            _file_attributes_copy(source=target, staged=staged)
            self.connection.close()
            # The old database's write-ahead log and its index go first: left beside the new file, SQLite
            # would apply the old log's pages to it.
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)


def _file_attributes_copy(*, source: Path, staged: Path) -> None:
    """Give the new database file the mode (and, run as root, the owner) of the one it replaces.

    The staged copy is a temporary file (0600, owned by whoever runs the restore): renamed over the
    database as it is, APM's own user, or a group that reads the file, would lose access to it.
    A database that did not exist gets the mode any new file gets (0666 less the umask).
    """
    try:
        old = source.stat()
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staged, 0o666 & ~umask)
        return
    os.chmod(staged, old.st_mode & 0o7777)
    if os.geteuid() == 0 and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        os.chown(staged, old.st_uid, old.st_gid)


# --- Storage of the backups ---


def backup_storage() -> Storage:
    """Where backups are written: ``STORAGES["dbbackup"]`` (a bucket in production, a directory here)."""
    return storages["dbbackup"]


def storage_description(storage: Storage) -> str:
    """The storage in words an operator can find it by: its directory, or its bucket and prefix."""
    if isinstance(storage, FileSystemStorage):
        return str(storage.location)
    bucket = getattr(storage, "bucket_name", "")
    location = getattr(storage, "location", "")
    return f"s3://{bucket}/{location}".rstrip("/") if bucket else type(storage).__name__


def backup_prefix(*, kind: str = "db", database: str = DEFAULT_DB_ALIAS) -> str:
    """The start of the names of this deployment's backups of ``database`` (``db``:
    ``<alias>-<APM_BACKUP_NAME>-``) or of its export tars (``media``: ``<APM_BACKUP_NAME>-``).

    Made by dbbackup's own name template with a marker for the date, so it always matches the names
    ``backup`` writes.
    """
    marker = "DATEMARKER"
    if kind == "media":
        name = dbbackup_utils.filename_generate("tar", content_type="media", wildcard=marker)
    else:
        name = dbbackup_utils.filename_generate("dump", database_name=database, wildcard=marker)
    return name.split(marker, 1)[0]


def _backup_date(name: str, prefix: str) -> datetime | None:
    """The date of backup ``name`` if it is ``prefix`` followed by a date and an extension, else None."""
    if not name.startswith(prefix):
        return None
    date = name[len(prefix) :].split(".", 1)[0]
    try:
        return datetime.strptime(date, settings.DBBACKUP_DATE_FORMAT)
    except ValueError:
        return None


def backup_list(*, kind: str = "db", database: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Names of the stored backups of ``kind`` (``db`` dumps of ``database`` or ``media`` tars of export
    files) of this deployment, newest first.

    Retention and "the newest backup" of ``restore`` read this list, so it holds only what they may
    act on: names this deployment made for this alias (another alias's or deployment's backups in the
    same storage are not ours to delete or restore), and dumps whose ``.metadata`` exists. The metadata
    is written last, so a dump cut short by a full disk or a killed process is never picked as the
    newest, nor counted as one of the backups kept.
    """
    try:
        _directories, names = backup_storage().listdir("")
    except FileNotFoundError:  # a backup directory not made yet: no backup
        return []
    except STORAGE_ERRORS as exc:
        raise BackupError(f"the backup storage cannot be listed: {exc}") from exc
    prefix = backup_prefix(kind=kind, database=database)
    present = set(names)
    dated = []
    for name in names:
        date = _backup_date(name, prefix)
        if date is None or name.endswith(".metadata") or (".tar" in name) != (kind == "media"):
            continue
        if kind == "db" and f"{name}.metadata" not in present:
            continue
        dated.append((date, name))
    return [name for _date, name in sorted(dated, reverse=True)]


def _exports_are_local() -> bool:
    """Export files on this machine's disk are backed up with the database; a bucket has its own
    versioning and replication (docs/operations.md)."""
    backend = str(settings.STORAGES["default"].get("BACKEND", ""))
    return backend == "django.core.files.storage.FileSystemStorage"


# --- Backup ---


@dataclass(frozen=True)
class BackupWritten:
    """What ``backup_create`` wrote and deleted, for the command to print."""

    storage: str
    database: str
    database_bytes: int
    exports: str | None
    exports_files: int
    deleted: tuple[str, ...]


def backup_create(
    *, database: str = DEFAULT_DB_ALIAS, keep: int | None = None, exports: bool | None = None
) -> BackupWritten:
    """Dump ``database`` (and the export files when they are on local disk) into the backup storage,
    then delete the oldest backups beyond ``keep`` (``APM_BACKUP_KEEP``; 0 keeps all).

    The dump is taken whole before anything is written: a failed dump leaves the storage as it was.
    """
    keep = settings.APM_BACKUP_KEEP if keep is None else keep
    if keep < 0:
        raise BackupError(f"keep is a number of backups (0: keep all), not {keep}")
    storage = backup_storage()
    connector = get_connector(database)
    # OSError: dbbackup spools the dump in the temporary directory (a full /tmp); sqlite3.Error: SQLite's
    # backup API writes its copy there too.
    try:
        dump = connector.create_dump()
    except (CommandConnectorError, OSError, sqlite3.Error) as exc:
        raise BackupError(f"the dump of database {database!r} failed: {exc}") from exc
    with dump:
        stored = _storage_write(storage, connector.generate_filename(), File(dump))
    # dbbackup's dbrestore reads the same metadata: it refuses a backup of another database engine.
    # Written last: until it exists the dump is not a backup (backup_list).
    metadata = {
        "engine": connector.connection.settings_dict["ENGINE"],
        "connector": f"{type(connector).__module__}.{type(connector).__name__}",
    }
    try:
        _storage_write(storage, f"{stored}.metadata", ContentFile(json.dumps(metadata).encode()))
    except BackupError:
        _storage_delete_quietly(storage, stored)
        raise
    exports_name, exports_files = None, 0
    if exports if exports is not None else _exports_are_local():
        try:
            exports_name, exports_files = _exports_backup(storage)
        except EXPORT_ERRORS as exc:
            raise BackupError(
                f"the database backup {stored} was written, but the archive of the export files "
                f"was not: {exc}"
            ) from exc
    deleted: list[str] = []
    try:
        if keep:
            # The export tars are the deployment's, not the alias's: a run that wrote none (--no-exports,
            # another alias's backup) leaves them to the runs that write them.
            for kind in ("db", "media") if exports_name else ("db",):
                for name in backup_list(kind=kind, database=database)[keep:]:
                    storage.delete(name)
                    if storage.exists(f"{name}.metadata"):
                        storage.delete(f"{name}.metadata")
                    deleted.append(name)
        size = storage.size(stored)
    except STORAGE_ERRORS as exc:
        raise BackupError(
            f"{stored} was written, but deleting older backups in {storage_description(storage)} failed "
            f"after {len(deleted)} deletions: {exc}"
        ) from exc
    return BackupWritten(
        storage=storage_description(storage),
        database=stored,
        database_bytes=size,
        exports=exports_name,
        exports_files=exports_files,
        deleted=tuple(deleted),
    )


def _storage_write(storage: Storage, name: str, content: File[Any]) -> str:
    """Save ``content`` as ``name`` (or a free name like it) and return the name, or raise BackupError.

    A write that fails (a full disk, a directory that cannot be made or written, a bucket that refuses)
    deletes what it had written: a partial file must not be taken for a backup.
    """
    try:
        name = storage.get_available_name(name)
    except STORAGE_ERRORS as exc:
        raise BackupError(f"cannot write to {storage_description(storage)}: {exc}") from exc
    try:
        return storage.save(name, content)
    except STORAGE_ERRORS as exc:
        _storage_delete_quietly(storage, name)
        raise BackupError(f"writing {name} to {storage_description(storage)} failed: {exc}") from exc


def _storage_delete_quietly(storage: Storage, name: str) -> None:
    """Delete a partial file after a failed write; the write's own error is the one to report."""
    with contextlib.suppress(*STORAGE_ERRORS):
        storage.delete(name)


def _media_files(media: Storage, path: str = "") -> Iterator[str]:
    directories, files = media.listdir(path)
    for name in files:
        yield os.path.join(path, name)
    for directory in directories:
        yield from _media_files(media, os.path.join(path, directory))


def _exports_backup(storage: Storage) -> tuple[str, int]:
    """A tar of every file of the export storage, in the format of dbbackup's ``mediabackup`` (so its
    ``mediarestore`` puts them back)."""
    media = storages["default"]
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=10 * 1024 * 1024) as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            if not isinstance(media, FileSystemStorage) or Path(media.location).is_dir():
                for name in sorted(_media_files(media)):
                    with media.open(name, "rb") as content:
                        info = tarfile.TarInfo(name)
                        info.size = media.size(name)
                        tar.addfile(info, content)
                    count += 1
        archive.seek(0)
        name = dbbackup_utils.filename_generate("tar", content_type="media")
        return _storage_write(storage, name, File(archive)), count


# --- Restore ---


@dataclass(frozen=True)
class Restored:
    """What ``backup_restore`` restored, for the command to print."""

    backup: str
    database: str
    tables: int
    replaced: int


def database_tables(*, database: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The tables ``database`` holds now (an empty list: a new, empty database)."""
    with connections[database].cursor() as cursor:
        return sorted(connections[database].introspection.table_names(cursor))


def _tables_drop(database: str) -> None:
    """Drop every table of ``database`` (MariaDB only: the undo of a failed restore into it)."""
    connection = connections[database]
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
        try:
            for table in tables:
                cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(table)}")
        finally:
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")


def backup_restore(
    *,
    name: str = "",
    path: str = "",
    database: str = DEFAULT_DB_ALIAS,
    source: str = "",
    force: bool = False,
) -> Restored:
    """Restore the backup ``name`` from the backup storage, or the local file ``path``, into
    ``database``; without either, the newest backup of the alias ``source`` (default: ``database``)
    made by this deployment (``APM_BACKUP_NAME``).

    The file is checked before the database is touched. A database that already has tables is refused
    unless ``force``, which replaces what the backup holds (stop the web, workers and beat first); on
    MariaDB ``force`` is refused too, as a failed restore there cannot be undone.
    Afterwards every cache entry is dropped: none was computed from the restored data.
    """
    if name and path:
        raise BackupError("give a backup name or a file path, not both")
    connector = get_connector(database)
    label, opener, metadata = _backup_locate(name=name, path=path, source=source or database)
    _engine_check(connector=connector, database=database, label=label, metadata=metadata)
    with tempfile.NamedTemporaryFile(prefix="apm-restore-") as staged:
        try:
            with opener() as backup_file:
                while chunk := backup_file.read(1 << 20):
                    staged.write(chunk)
            staged.flush()
        except STORAGE_ERRORS as exc:
            raise BackupError(
                f"copying {label} to the temporary directory failed: {exc}; "
                f"database {database!r} was not touched"
            ) from exc
        try:
            connector.check_dump(Path(staged.name))
        except BackupError as exc:
            raise BackupError(
                f"{label} cannot be restored, {exc}; database {database!r} was not touched"
            ) from exc
        tables = database_tables(database=database)
        if tables and not force:
            raise BackupError(
                f"database {database!r} ({connector.settings['NAME']}) is not empty: it has {len(tables)} "
                f"tables ({', '.join(tables[:3])}, ...). Restore into a new, empty database, or pass "
                "--force to replace its contents with the backup's (stop APM's web, workers and beat first)"
            )
        if tables and connections[database].vendor == "mysql":
            # MariaDB commits every DROP and CREATE TABLE as it runs: a dump that fails half-way (a damaged
            # line, a full disk, a lost connection) would leave the live tables dropped or half loaded,
            # with no way back. Only an empty database can be put back as it was.
            raise BackupError(
                f"database {database!r} ({connector.settings['NAME']}) is not empty ({len(tables)} tables) "
                "and --force is refused on MariaDB, whose DDL cannot be rolled back: a restore that failed "
                "half-way would leave the live tables dropped or half loaded. Create a new database "
                "(CREATE DATABASE apm_restored CHARACTER SET utf8mb4), restore into it and point "
                "DATABASE_URL at it; drop the old one once you are sure"
            )
        connections[database].close()
        # pg_restore --clean (--if-exists) drops each object before recreating it: only when replacing
        # what is there.
        connector.drop = connector.if_exists = bool(tables)
        staged.seek(0)
        try:
            connector.restore_dump(staged)
        except (CommandConnectorError, OSError) as exc:
            # PostgreSQL rolls its one transaction back, SQLite never renamed the new file in, and MariaDB
            # (only ever restored into an empty database) dropped what it had created.
            raise BackupError(
                f"the restore of {label} failed and database {database!r} was left as it was: {exc}"
            ) from exc
        finally:
            connections[database].close()
    if database == DEFAULT_DB_ALIAS:
        cache_invalidate(keys=[EPOCH_KEY])
    return Restored(
        backup=label,
        database=str(connector.settings["NAME"]),
        tables=len(database_tables(database=database)),
        replaced=len(tables),
    )


def _backup_locate(
    *, name: str, path: str, source: str
) -> tuple[str, Callable[[], IO[bytes]], dict[str, Any]]:
    """The backup to restore: its name for messages, how to open it, and its metadata (may be empty).

    Without a name or path, the newest backup of the alias ``source`` by this deployment.
    """
    if path:
        file = Path(path)
        if not file.is_file():
            raise BackupError(f"{path}: no such file")
        meta = Path(f"{path}.metadata")
        metadata = _metadata_parse(meta.read_bytes(), path) if meta.is_file() else {}
        return path, lambda: file.open("rb"), metadata
    storage = backup_storage()
    if not name:
        newest = backup_list(kind="db", database=source)
        if not newest:
            raise BackupError(
                f"there is no backup in {storage_description(storage)} named "
                f"{backup_prefix(database=source)}<date> (a backup of database {source!r} by this "
                "deployment, APM_BACKUP_NAME): name the backup to restore"
            )
        name = newest[0]
    metadata = {}
    try:
        if not storage.exists(name):
            raise BackupError(f"there is no backup named {name!r} in {storage_description(storage)}")
        if storage.exists(f"{name}.metadata"):
            with storage.open(f"{name}.metadata", "rb") as meta_file:
                metadata = _metadata_parse(meta_file.read(), name)
    except SuspiciousOperation as exc:
        # A path that leaves the backup storage (../../etc/passwd, /etc/passwd): a file of this machine is
        # restored with --path, on purpose.
        raise BackupError(
            f"{name!r} is not a backup name in {storage_description(storage)} (a name, not a path: "
            f"{exc}); restore a file of this machine with --path"
        ) from exc
    except STORAGE_ERRORS as exc:
        raise BackupError(f"cannot read {name} from {storage_description(storage)}: {exc}") from exc
    return name, lambda: storage.open(name, "rb"), metadata


def _engine_check(*, connector: Any, database: str, label: str, metadata: dict[str, Any]) -> None:
    """Refuse a backup of another kind of database, by its metadata or else by its file name."""
    engine = str(connector.connection.settings_dict["ENGINE"])
    made_by = str(metadata.get("engine", ""))
    # django_prometheus' engines wrap Django's: compare the vendor, the last part of the name.
    if made_by and made_by.rsplit(".", 1)[-1] != engine.rsplit(".", 1)[-1]:
        raise BackupError(
            f"{label} is a backup of a {made_by} database; database {database!r} is {engine}: "
            "a backup restores only into the same kind of database"
        )
    if not made_by and not label.endswith(f".{connector.extension}"):
        raise BackupError(
            f"{label} does not look like a backup of this kind of database ({engine} backups end in "
            f".{connector.extension})"
        )


def _metadata_parse(content: bytes, label: str) -> dict[str, Any]:
    try:
        metadata = json.loads(content)
    except ValueError as exc:
        raise BackupError(f"{label}.metadata is not JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise BackupError(f"{label}.metadata is not a JSON object")
    return metadata
