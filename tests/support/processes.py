"""Real `sync` processes released at the same moment, and the projects they share."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cio_emulator import EmulatorHandle
from support import Project, emu_get

LAUNCHER = """
import json, multiprocessing, os, sys
from engine.cli import main

def child(barrier, argv, out):
    for fd, path in ((1, out), (2, out + ".err")):
        with open(path, "wb") as file:
            os.dup2(file.fileno(), fd)
    barrier.wait(60)
    main(argv, prog_name="sync")

jobs = json.loads(sys.argv[1])
fork = multiprocessing.get_context("fork")
barrier = fork.Barrier(len(jobs))
children = [fork.Process(target=child, args=(barrier, argv, out)) for argv, out in jobs]
for process in children:
    process.start()
for process in children:
    process.join(120)
print(json.dumps([process.exitcode for process in children]))
"""


@dataclass
class Finished:
    args: list[str]
    code: int | None
    stdout: str
    stderr: str

    def __str__(self) -> str:
        tail = "\n".join(self.stderr.splitlines()[-12:])
        return f"sync {' '.join(self.args)} → {self.code}\n{tail}"


def at_once(project: Project, commands: list[list[str]]) -> list[Finished]:
    """Run `sync --project DIR COMMAND` for each command, all released at the same moment."""
    outs = [project.root / f"process-{i}.out" for i in range(len(commands))]
    jobs = [
        [["--project", str(project.root), *command], str(out)]
        for command, out in zip(commands, outs, strict=True)
    ]
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, json.dumps(jobs)],
        capture_output=True,
        timeout=180,
        check=False,
        cwd=project.root,
    )
    assert launched.returncode == 0, launched.stderr.decode()
    codes = json.loads(launched.stdout)
    return [
        Finished(command, code, out.read_text(), Path(f"{out}.err").read_text())
        for command, code, out in zip(commands, codes, outs, strict=True)
    ]


def assert_all_ok(finished: list[Finished]) -> None:
    failed = [f for f in finished if f.code != 0]
    assert not failed, f"{len(failed)} of {len(finished)} failed:\n" + "\n".join(map(str, failed))


def add_source(project: Project, name: str, url: str) -> None:
    path = project.root / "syncs" / "project.yml"
    document = json.loads(path.read_text())
    document["sources"][name] = {"url": url}
    path.write_text(json.dumps(document, indent=2))


def inline_syncs(project: Project, count: int, records: int = 3) -> list[str]:
    """`count` person syncs reading an in-memory source (no file): s0 sends s0-p0..s0-p2..."""
    add_source(project, "inline", "duckdb:///:memory:")
    names = [f"s{i}" for i in range(count)]
    for name in names:
        query = f"SELECT '{name}-p' || i AS id, i AS score FROM range({records}) t(i)"
        project.write_sync(name, f"object: person\nsource: inline\nkey: id\nquery: {query}\n")
    return names


def people_ids(emulator: EmulatorHandle) -> set[str]:
    return {p["id"] for p in emu_get(emulator, "people") if p.get("id")}
