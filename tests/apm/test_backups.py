"""Backups and the restore drill (apm/backups.py, ``manage.py backup`` and ``restore``).

The drill backs up a populated APM (the demo portfolio and a real ingestion of a git repository),
restores it into a new, empty database on the same server (a second database on PostgreSQL and
MariaDB, a new file on SQLite), compares every table row for row, then points APM at the restored
database and ingests the same repository again: nothing is duplicated, lost or new. It runs on every
database of the suite; docs/operations.md says how often it is also run by hand against real backups.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import resource
import secrets
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from dbbackup import settings as dbbackup_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.db.utils import load_backend

from apm.backups import backup_create
from demo.data import DEMO_PROJECT_KEYS
from projects.models import Project
from repos.models import Commit, IngestionRun
from tests import isolation
from tests.processes import ROOT, manage
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db(transaction=True)  # pg_dump and mysqldump see committed rows only

RESTORED = "restored"


def run(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def database_url(alias: str) -> str:
    """The URL of database ``alias``, for a manage.py process pointed at it."""
    db = connections[alias].settings_dict
    if connections[alias].vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connections[alias].vendor]
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"{scheme}://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def backups(settings, tmp_path: Path) -> Path:
    """The backup storage: a directory of the test's own, with the settings' other options."""
    directory = tmp_path / "backups"
    configured = settings.STORAGES["dbbackup"]
    assert configured["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    settings.STORAGES = {
        **settings.STORAGES,
        "dbbackup": {**configured, "OPTIONS": {**configured["OPTIONS"], "location": str(directory)}},
    }
    return directory


@pytest.fixture
def restored(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on the test database's server, as the ``restored`` alias."""
    source = connection.settings_dict
    target = copy.deepcopy(source)
    # No pool: its idle connections would keep the database from being dropped afterwards.
    target["OPTIONS"].pop("pool", None)
    if connection.vendor == "sqlite":
        target["NAME"] = str(tmp_path / "restored.sqlite3")
    else:
        target["NAME"] = f"{source['NAME']}_restored"
        quoted = connection.ops.quote_name(target["NAME"])
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {quoted}")
            cursor.execute(f"CREATE DATABASE {quoted}")
    # A connection made here, not an alias of DATABASES: the test case admits those (it refuses the
    # aliases of DATABASES it was not told about, and DATABASES cannot name a database made by a test).
    connections[RESTORED] = load_backend(target["ENGINE"]).DatabaseWrapper(target, RESTORED)
    yield RESTORED
    connections[RESTORED].close()
    del connections[RESTORED]
    if connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            force = " WITH (FORCE)" if connection.vendor == "postgresql" else ""
            cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(target['NAME'])}{force}")


def table_rows(alias: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of ``alias`` (all columns), ordered by primary key."""
    db = connections[alias]
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with db.cursor() as cursor:
        temporary: set[str] = set()
        if db.vendor == "postgresql":
            # The ingestion's staging tables are TEMPORARY, of the session that ingested: not the
            # database's, never in a backup.
            cursor.execute("SELECT relname FROM pg_class WHERE relpersistence = 't'")
            temporary = {name for (name,) in cursor.fetchall()}
        for table in sorted(set(db.introspection.table_names(cursor)) - temporary):
            primary_key = db.introspection.get_primary_key_column(cursor, table)
            order = f" ORDER BY {db.ops.quote_name(primary_key)}" if primary_key else ""
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}{order}")  # noqa: S608 (names from the database)
            found = [tuple(row) for row in cursor.fetchall()]
            rows[table] = found if primary_key else sorted(found, key=repr)
    return rows


def table_counts(alias: str) -> dict[str, int]:
    return {table: len(rows) for table, rows in table_rows(alias).items()}


@pytest.fixture
def populated(settings, tmp_path: Path) -> GitRepo:
    """APM with the demo portfolio and a real git repository ingested into its first project."""
    settings.APM_REPO_ROOTS = [str(tmp_path)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    run("seed_demo", allow_production=True, no_login=True)
    key = DEMO_PROJECT_KEYS[0]
    repo = GitRepo(tmp_path / "service")
    for number in range(1, 6):
        repo.write(f"src/module_{number}.py", "x = 1\n" * number)
        repo.commit(f"{key}-{number}: module {number}" + (f"\n\nfixes {key}-{number}" if number % 2 else ""))
    repo.git("mv", "src/module_1.py", "src/renamed.py")
    repo.commit(f"Rename the first module ({key}-1)")
    run("ingest_repo", str(repo.path), project=key)
    return repo


def test_restore_drill(populated: GitRepo, backups: Path, restored: str, tmp_path: Path):
    key = DEMO_PROJECT_KEYS[0]
    before = table_rows("default")
    for table in ("projects", "tasks", "task_events", "repositories", "commits", "files", "file_changes"):
        assert before[table], f"the drill needs rows in {table}"
    assert before["commit_task_links"], "the drill needs commits linked to tasks"

    output = run("backup", keep=0)
    dumps = [
        path.name for path in backups.iterdir() if path.suffix != ".metadata" and ".tar" not in path.name
    ]
    assert len(dumps) == 1
    assert dumps[0] in output

    output = run("restore", database=restored, source_database="default")
    assert f"Restored {dumps[0]}" in output

    # Every table of every app, every column, row for row.
    after = table_rows(restored)
    assert after.keys() == before.keys()
    for table in before:
        assert after[table] == before[table], f"{table} differs after the restore"

    # APM pointed at the restored database, with a new, empty workspace (git mirrors are never backed
    # up): the same repository again finds nothing new, duplicates nothing, loses nothing.
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(restored),
        "APM_REPO_ROOTS": str(tmp_path),
        "APM_WORKSPACE": str(tmp_path / "rebuilt-workspace"),
    }
    again = manage("ingest_repo", str(populated.path), "--project", key, **env)
    assert again.returncode == 0, again.stderr
    assert "service: 0 new commits" in again.stdout
    counts = table_counts(restored)
    expected = {table: len(rows) for table, rows in before.items()}
    expected["ingestion_runs"] += 1  # the run just made, which found nothing
    assert counts == expected
    assert table_rows(restored)["commits"] == before["commits"]
    assert table_rows(restored)["file_changes"] == before["file_changes"]
    newest = IngestionRun.objects.using(restored).order_by("-pk").first()
    assert newest is not None
    assert (newest.status, newest.commits_added) == (IngestionRun.Status.SUCCEEDED, 0)

    # Sequences came back too: new rows take ids after the restored ones instead of colliding.
    populated.write("src/after_restore.py", "y = 2\n")
    populated.commit(f"{key}-2: after the restore")
    later = manage("ingest_repo", str(populated.path), "--project", key, **env)
    assert later.returncode == 0, later.stderr
    assert "service: 1 new commits" in later.stdout
    assert Commit.objects.using(restored).count() == len(before["commits"]) + 1
    project = Project.objects.using(restored).create(key="AFTER", name="Created after the restore")
    assert project.pk > max(row[0] for row in before["projects"])


def test_backup_twice_writes_two_backups_and_keeps_the_newest(backups: Path, transactional_db: None):
    first = run("backup", keep=0)
    second = run("backup", keep=0)
    dumps = sorted(path.name for path in backups.iterdir() if path.name.endswith(connection_extension()))
    assert len(dumps) == 2
    assert dumps[0] in first
    assert dumps[1] in second
    assert all((backups / f"{name}.metadata").is_file() for name in dumps)

    third = run("backup", keep=2)

    kept = sorted(path.name for path in backups.iterdir() if path.name.endswith(connection_extension()))
    assert kept == [dumps[1], kept[1]]
    assert kept[1] not in dumps
    assert f"Deleted the older backup {dumps[0]}." in third
    assert not (backups / f"{dumps[0]}.metadata").exists()


def connection_extension() -> str:
    return {"postgresql": ".psql.bin", "mysql": ".mariadb.sql", "sqlite": ".sqlite3"}[connection.vendor]


def test_restore_refuses_a_database_that_is_not_empty_unless_forced(
    populated: GitRepo, backups: Path, restored: str
):
    run("backup")
    run("restore", database=restored, source_database="default")
    rows = table_rows(restored)

    with pytest.raises(CommandError, match=r"is not empty: it has \d+ tables .* pass --force"):
        run("restore", database=restored, source_database="default")
    with pytest.raises(CommandError, match="is not empty"):
        run("restore", database="default")
    assert table_rows(restored) == rows

    Project.objects.using(restored).filter(key=DEMO_PROJECT_KEYS[0]).update(name="Changed after the restore")
    changed = table_rows(restored)
    if connection.vendor == "mysql":
        # MariaDB cannot undo a restore that fails half-way over live tables: --force is refused, and
        # the database keeps what it had.
        for _ in range(2):
            with pytest.raises(CommandError, match=r"--force is refused on MariaDB.*Create a new database"):
                run("restore", database=restored, source_database="default", force=True)
            assert table_rows(restored) == changed
        return
    # Forced twice: the same rows as restoring once, even after a change in between.
    for _ in range(2):
        assert "replacing" in run("restore", database=restored, source_database="default", force=True)
        assert table_rows(restored) == rows


def damage_in_the_middle(dump: Path) -> None:
    """Break a backup in its middle, leaving its start and end (a mysqldump's header and last line) whole."""
    content = dump.read_bytes()
    if connection.vendor == "mysql":
        # The attacker's damage: a broken statement among the rows of a table.
        at = content.index(b"INSERT INTO `tasks`")
        at = content.index(b"\n", at) + 1
    else:
        at = len(content) // 2
    dump.write_bytes(content[:at] + b"GARBAGE'(( ;\n" + content[at:])


def test_a_forced_restore_of_a_backup_damaged_in_the_middle_leaves_the_live_data(
    populated: GitRepo, backups: Path, restored: str
):
    run("backup")
    run("restore", database=restored, source_database="default")
    rows = table_rows(restored)
    assert rows["tasks"]
    (dump,) = (path for path in backups.iterdir() if path.name.endswith(connection_extension()))
    damage_in_the_middle(dump)

    for _ in range(2):
        with pytest.raises(CommandError, match="Nothing was restored") as failure:
            run("restore", dump.name, database=restored, force=True)
        assert "partly" not in str(failure.value)
        assert table_rows(restored) == rows


def test_retention_and_the_newest_backup_are_those_of_one_alias_and_one_deployment(
    backups: Path, restored: str, monkeypatch: pytest.MonkeyPatch
):
    for _ in range(2):
        run("backup", keep=0)
    ours = sorted(path.name for path in backups.iterdir() if path.name.startswith("default-apm-"))
    tars = sorted(path.name for path in backups.glob("apm-*.tar"))
    assert len(ours) == 4  # two dumps and their metadata
    assert len(tars) == 2

    # Another alias's backups, kept 1: the default alias's are not its to delete.
    written = backup_create(database=restored, keep=1, exports=False)
    backup_create(database=restored, keep=1, exports=False)
    assert sorted(path.name for path in backups.iterdir() if path.name.startswith("default-apm-")) == ours
    assert len(list(backups.glob(f"{restored}-apm-*.metadata"))) == 1
    assert written.database.startswith(f"{restored}-apm-")

    # Another deployment (APM_BACKUP_NAME=staging) in the same storage, kept 1: ours stay, dumps and tars.
    monkeypatch.setattr(dbbackup_settings, "HOSTNAME", "staging")
    run("backup", keep=1)
    output = run("backup", keep=1)
    assert "Deleted the older backup default-staging-" in output
    assert "Deleted the older backup default-apm" not in output
    assert sorted(path.name for path in backups.iterdir() if path.name.startswith("default-apm-")) == ours
    assert sorted(path.name for path in backups.glob("apm-*.tar")) == tars
    assert len(list(backups.glob("default-staging-*.metadata"))) == 1
    monkeypatch.setattr(dbbackup_settings, "HOSTNAME", "apm")

    # `restore` without a name takes this deployment's newest backup of the alias, not staging's newer one.
    newest = max(name for name in ours if not name.endswith(".metadata"))
    assert f"Restored {newest} into" in run("restore", database=restored, source_database="default")


def test_restore_of_a_missing_backup_names_it(backups: Path, restored: str, tmp_path: Path):
    with pytest.raises(CommandError, match="there is no backup in"):
        run("restore", database=restored)
    # A path out of the backup storage is not a backup name.
    for name in ("../../../etc/passwd", "/etc/passwd"):
        with pytest.raises(CommandError, match=f"{re.escape(repr(name))} is not a backup name.*--path"):
            run("restore", name, database=restored)
    with pytest.raises(CommandError, match=r"no backup named 'nothing\.psql\.bin'"):
        run("restore", "nothing.psql.bin", database=restored)
    with pytest.raises(CommandError, match="no such file"):
        run("restore", database=restored, path=str(tmp_path / "missing.dump"))
    assert table_rows(restored) == {}


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_restore_of_a_damaged_backup_fails_and_leaves_the_database_empty(
    populated: GitRepo, backups: Path, restored: str, damage: str
):
    run("backup")
    (dump,) = (path for path in backups.iterdir() if path.name.endswith(connection_extension()))
    content = dump.read_bytes()
    dump.write_bytes(b"\x00not a backup\n" * 100 if damage == "garbage" else content[: len(content) // 2])

    with pytest.raises(CommandError, match=f"Nothing was restored: .*{re.escape(dump.name)}"):
        run("restore", database=restored, source_database="default")

    assert table_rows(restored) == {}


def test_restore_refuses_a_backup_of_another_database_engine(backups: Path, restored: str):
    run("backup")
    (metadata,) = backups.glob("*.metadata")
    metadata.write_text(json.dumps({"engine": "django.db.backends.oracle"}))

    with pytest.raises(CommandError, match=r"backup of a django\.db\.backends\.oracle database"):
        run("restore", database=restored, source_database="default")
    assert table_rows(restored) == {}


def test_local_export_files_are_archived_with_the_database_and_a_bucket_is_left_out(
    backups: Path, transactional_db: None, settings
):
    saved = default_storage.save("exports/digest.html", ContentFile(b"<p>the digest</p>"))
    try:
        output = run("backup", keep=0)
    finally:
        default_storage.delete(saved)
    (archive,) = backups.glob("*.tar")
    assert f"Export files: {archive.name}" in output
    with tarfile.open(archive) as tar:
        member = tar.extractfile(saved)
        assert member is not None
        assert member.read() == b"<p>the digest</p>"

    # Export files in a bucket are protected by its versioning and replication, not copied by the backup.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {"bucket_name": "apm-exports"}},
    }
    output = run("backup", keep=0)
    assert "Export files" not in output
    assert len(list(backups.glob("*.tar"))) == 1


def test_the_database_password_never_reaches_a_command_line(
    backups: Path, transactional_db: None, caplog: pytest.LogCaptureFixture
):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no password: its backup is taken inside the process, by SQLite's API")
    user, password = f"apm_backup_{os.getpid()}", f"pw-{secrets.token_hex(12)}"
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP ROLE IF EXISTS {user}")
            cursor.execute(f"CREATE ROLE {user} LOGIN PASSWORD %s", [password])
            cursor.execute(f"GRANT pg_read_all_data TO {user}")
        else:
            # '%%' is '%' in a statement with parameters only (the driver formats those alone).
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cursor.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", [password])
            cursor.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'%'")
    settings_dict = copy.deepcopy(connection.settings_dict)
    settings_dict["OPTIONS"].pop("pool", None)
    settings_dict.update(USER=user, PASSWORD=password)
    connections["with_password"] = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(
        settings_dict, "with_password"
    )
    try:
        with caplog.at_level(logging.DEBUG, logger="dbbackup.command"):
            written = backup_create(database="with_password", keep=0, exports=False)
    finally:
        connections["with_password"].close()
        del connections["with_password"]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP ROLE IF EXISTS {user}")
            else:
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")

    # The dump was made as that user (MariaDB checks the password: it reached mysqldump by MYSQL_PWD)...
    assert written.database_bytes > 0
    # ... and the command lines dbbackup ran and logged, which `ps` shows to every user, do not hold it.
    commands = [record.getMessage() for record in caplog.records if record.name == "dbbackup.command"]
    assert any(user in command for command in commands)
    assert not any(password in command for command in commands)


def backup_process(
    tmp_path: Path, *args: str, file_size_limit: int = 0, **env: str
) -> subprocess.CompletedProcess[str]:
    """``manage.py backup`` in a process of its own, with the settings as deployed (the test settings'
    backup storage is APM_BACKUP_DIR's), on the test database; ``file_size_limit``: RLIMIT_FSIZE."""

    def limit() -> None:
        if file_size_limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    base = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    return subprocess.run(
        [sys.executable, "manage.py", "backup", *args],
        cwd=ROOT,
        env={
            **base,
            **isolation.worker_environment(""),
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url("default"),
            "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
            **env,
        },
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_backups_are_readable_by_their_owner_only(tmp_path: Path, transactional_db: None):
    directory = tmp_path / "new" / "backups"
    result = backup_process(tmp_path, APM_BACKUP_DIR=str(directory))
    assert result.returncode == 0, result.stderr

    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert {path.suffix for path in files} >= {".metadata", ".tar"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_a_backup_that_cannot_be_written_says_why_and_leaves_no_partial_file(
    tmp_path: Path, transactional_db: None
):
    # A file-size limit of half a dump: the dump (spooled in the temporary directory) or its copy cannot be
    # written whole, while the database can still be opened (SQLite's shared-memory file is 32 KiB).
    whole = backup_process(tmp_path, "--no-exports", APM_BACKUP_DIR=str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    (dump,) = (path for path in (tmp_path / "whole").iterdir() if path.suffix != ".metadata")
    if connection.vendor == "sqlite":
        assert dump.stat().st_size // 2 > 32 * 1024, "the limit must leave room for SQLite's -shm file"
    directory = tmp_path / "backups"
    limited = backup_process(
        tmp_path, file_size_limit=dump.stat().st_size // 2, APM_BACKUP_DIR=str(directory)
    )
    assert limited.returncode == 1, limited.stderr
    assert "CommandError: Nothing was backed up:" in limited.stderr
    assert "Traceback" not in limited.stderr
    assert not directory.exists() or list(directory.iterdir()) == []

    # A backup directory that cannot be made.
    impossible = backup_process(tmp_path, APM_BACKUP_DIR="/dev/null/backups")
    assert impossible.returncode == 1, impossible.stderr
    assert "CommandError: Nothing was backed up:" in impossible.stderr
    assert "Not a directory" in impossible.stderr
    assert "Traceback" not in impossible.stderr


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs (root only): a backup directory that fills up after the dump was taken."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"mounting a tmpfs needs root (the file-size limit test covers the rest): {mounted.stderr}"
        )
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_backup_disk_says_so_and_leaves_no_partial_file(
    tmp_path: Path, transactional_db: None, small_disk: Path
):
    result = backup_process(tmp_path, "--no-exports", APM_BACKUP_DIR=str(small_disk))
    assert result.returncode == 1, result.stderr
    assert "CommandError: Nothing was backed up: writing " in result.stderr
    assert "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(small_disk.iterdir()) == []


def test_a_dump_without_its_metadata_is_not_a_backup(backups: Path, restored: str):
    run("backup", keep=0)
    (first,) = (path for path in backups.iterdir() if path.name.endswith(connection_extension()))
    # What a backup cut short by a killed process leaves: a newer dump, half written, without metadata.
    partial = backups / f"default-apm-2999-01-01-000000-000000{connection_extension()}"
    partial.write_bytes(first.read_bytes()[:100])

    output = run("backup", keep=1)

    dumps = sorted(path.name for path in backups.iterdir() if path.name.endswith(connection_extension()))
    (second,) = (name for name in dumps if name not in (first.name, partial.name))
    assert f"Deleted the older backup {first.name}." in output
    assert partial.name not in output
    assert dumps == sorted([second, partial.name])
    assert f"Restored {second} into" in run("restore", database=restored, source_database="default")


def test_an_sqlite_restore_keeps_the_database_file_mode_and_owner(backups: Path, restored: str):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL and MariaDB restore into the server's files, not into a file of APM's")
    run("backup", keep=0)
    target = Path(connections[restored].settings_dict["NAME"])
    connections[restored].ensure_connection()  # SQLite makes the (empty) file
    connections[restored].close()
    target.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(target, 65534, 65534)

    run("restore", database=restored, source_database="default")

    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    if os.geteuid() == 0:
        assert (target.stat().st_uid, target.stat().st_gid) == (65534, 65534)
    assert table_rows(restored)


@pytest.mark.parametrize("value", ["abc", "1.5", "", "-1"])
def test_a_malformed_backup_keep_is_named_at_start(value: str):
    result = manage("check", APM_BACKUP_KEEP=value)

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "Configuration error: APM_BACKUP_KEEP is a whole number of backups, 0 or more"
    )
    assert repr(value) in result.stderr
    assert "Traceback" not in result.stderr
