"""Generate git repositories of any size quickly, through ``git fast-import``.

Used by the ingestion benchmark (benchmarks/ingest.py) and by tests that need big histories or big
commits. Histories are deterministic for a given seed.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

_EPOCH = 1_600_000_000


def _content(path: str, version: int) -> bytes:
    lines = [f"line {number}\n" for number in range(12)]
    lines[version % 12] = f"changed in version {version}\n"
    lines.extend(f"extra {version} {n}\n" for n in range(version % 5))
    return "".join(lines).encode()


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def history_stream(
    *, commits: int, files: int = 2000, touched: int = 4, seed: int = 7, initial_files: int | None = None
) -> Iterator[bytes]:
    """fast-import commands for a linear history of ``commits`` commits on ``main``.

    Each commit changes ``touched`` of ``files`` possible paths; the first commit adds ``initial_files``
    of them (all by default). Few initial files out of many possible paths give a tree that widens
    with every commit.
    """
    rng = random.Random(seed)
    versions: dict[str, int] = {}
    for number in range(1, commits + 1):
        when = _EPOCH + number * 600
        author = f"Dev {rng.randrange(25)} <dev{rng.randrange(25)}@example.com>"
        message = f"Change {number}: work on APM-{rng.randrange(1, 500)}\n".encode()
        yield b"commit refs/heads/main\n"
        yield f"author {author} {when} +0000\ncommitter {author} {when} +0000\n".encode()
        yield _data(message)
        if number == 1:
            count = files if initial_files is None else initial_files
            initial = [f"src/pkg{index % 40}/module_{index}.py" for index in range(count)]
            for path in initial:
                versions[path] = 0
                yield b"M 100644 inline " + path.encode() + b"\n" + _data(_content(path, 0))
            continue
        for _ in range(touched):
            # ``files`` distinct paths in 40 packages: the tree stays the size of a real project
            # instead of growing with every commit.
            index = rng.randrange(files)
            path = f"src/pkg{index % 40}/module_{index}.py"
            version = versions.get(path, -1) + 1
            versions[path] = version
            yield b"M 100644 inline " + path.encode() + b"\n" + _data(_content(path, version))
        if number % 97 == 0 and versions:
            gone = rng.choice(sorted(versions))
            del versions[gone]
            yield b"D " + gone.encode() + b"\n"


def wide_commit_stream(*, files: int) -> Iterator[bytes]:
    """fast-import commands for one commit adding ``files`` small files."""
    yield b"commit refs/heads/main\n"
    identity = f"Wide <wide@example.com> {_EPOCH} +0000"
    yield f"author {identity}\ncommitter {identity}\n".encode()
    yield _data(b"Add many files\n")
    for index in range(files):
        path = f"generated/{index % 100:02d}/file_{index}.txt".encode()
        yield b"M 100644 inline " + path + b"\n" + _data(b"generated %d\nsecond line\n" % index)


def repository_create(path: Path, stream: Iterator[bytes]) -> Path:
    """A new repository at ``path`` holding what ``stream`` describes; returns its path."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    process = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet", "--done"],
        stdin=subprocess.PIPE,
    )
    assert process.stdin is not None
    for chunk in stream:
        process.stdin.write(chunk)
    process.stdin.write(b"done\n")
    process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError("git fast-import failed")
    subprocess.run(["git", "-C", str(path), "reset", "-q", "--hard", "main"], check=True)
    return path
