"""`sync init`: a new project that runs at once against the embedded emulator."""

from __future__ import annotations

from pathlib import Path

PROJECT_YML = """\
# cio-sync project: see the README for every key.
state: duckdb:///.sync/state.duckdb
sources:
  warehouse:
    url: "duckdb:///:memory:"        # reads syncs/data/*.csv, relative to this project
workspaces:
  sandbox:
    emulator: true                   # the embedded Customer.io emulator: no credentials needed
  # prod:
  #   site_id: ${CIO_SITE_ID}
  #   track_api_key: ${CIO_TRACK_API_KEY}
  #   app_api_key: ${CIO_APP_API_KEY}
  #   region: us
defaults:
  workspace: sandbox
  source: warehouse
"""

PEOPLE_YML = """\
description: Customers as Customer.io people, kept in step with the warehouse.
object: person
behavior: upsert
identifier: id
key: id
query: |
  SELECT id, email, first_name, plan, created_at
  FROM read_csv('syncs/data/people.csv')
"""

PEOPLE_CSV = """\
id,email,first_name,plan,created_at
1,ada@example.com,Ada,pro,2024-01-05 09:30:00
2,grace@example.com,Grace,free,2024-02-11 14:00:00
"""

FILES = {
    "syncs/project.yml": PROJECT_YML,
    "syncs/people.yml": PEOPLE_YML,
    "syncs/data/people.csv": PEOPLE_CSV,
    ".gitignore": ".sync/\n",
}


def scaffold(directory: Path) -> list[Path]:
    """Write the starter files that do not exist yet; return the ones written."""
    written = []
    for relative, text in FILES.items():
        path = directory / relative
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
