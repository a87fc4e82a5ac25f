"""`schedule:` and `sync run --due` (SPEC §2.2, §7.4): standard cron in UTC, what validate
refuses and where, what is due at a given time, and the command end to end."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import PEOPLE_SYNC, Project, emu_get, load_project, people_table
from support.config_files import PEOPLE, make_project, only_problem

from engine.cli import main
from engine.config.cron import canonical_cron, is_cron
from engine.schedule import Decision, decide, due_syncs, last_due, next_due


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


def fires(expression: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every time the expression names after `start`, up to `end`."""
    found = []
    at = next_due(expression, start)
    while at <= end:
        found.append(at)
        at = next_due(expression, at)
    return found


def days(expression: str, year: int, month: int) -> list[int]:
    """The days of a month on which a daily-or-rarer expression fires."""
    start = utc(year, month, 1) - dt.timedelta(minutes=1)
    end = utc(year + month // 12, month % 12 + 1, 1) - dt.timedelta(minutes=1)
    return [at.day for at in fires(expression, start, end)]


# --- what a schedule names -------------------------------------------------------------------

WEDNESDAY = utc(2025, 6, 4, 12, 30, 45)


@pytest.mark.parametrize(
    ("expression", "latest", "following"),
    [
        ("@hourly", utc(2025, 6, 4, 12, 0), utc(2025, 6, 4, 13, 0)),
        ("@daily", utc(2025, 6, 4), utc(2025, 6, 5)),
        ("@midnight", utc(2025, 6, 4), utc(2025, 6, 5)),
        ("@weekly", utc(2025, 6, 1), utc(2025, 6, 8)),  # Sunday 00:00
        ("@monthly", utc(2025, 6, 1), utc(2025, 7, 1)),
        ("@yearly", utc(2025, 1, 1), utc(2026, 1, 1)),
        ("@ANNUALLY", utc(2025, 1, 1), utc(2026, 1, 1)),
        ("0 9 * * MON", utc(2025, 6, 2, 9), utc(2025, 6, 9, 9)),
        ("0 9 * * mon", utc(2025, 6, 2, 9), utc(2025, 6, 9, 9)),
        ("0 0 1 JAN *", utc(2025, 1, 1), utc(2026, 1, 1)),
        ("*/15 * * * *", utc(2025, 6, 4, 12, 30), utc(2025, 6, 4, 12, 45)),
        ("5-5 * * * *", utc(2025, 6, 4, 12, 5), utc(2025, 6, 4, 13, 5)),  # one minute, not all
        ("0 6-18/6 * * *", utc(2025, 6, 4, 12), utc(2025, 6, 4, 18)),
        ("30 12 * Jun-Aug wed,fri", utc(2025, 6, 4, 12, 30), utc(2025, 6, 6, 12, 30)),
        ("0 0 29 2 *", utc(2024, 2, 29), utc(2028, 2, 29)),
    ],
)
def test_latest_and_next_time(expression: str, latest: dt.datetime, following: dt.datetime) -> None:
    assert (last_due(expression, WEDNESDAY), next_due(expression, WEDNESDAY)) == (
        latest,
        following,
    )


def test_the_latest_time_includes_the_current_minute() -> None:
    assert last_due("0 9 * * *", utc(2025, 6, 4, 9)) == utc(2025, 6, 4, 9)
    assert last_due("0 9 * * *", utc(2025, 6, 4, 9, 0, 59)) == utc(2025, 6, 4, 9)
    assert last_due("0 9 * * *", utc(2025, 6, 4, 8, 59, 59)) == utc(2025, 6, 3, 9)
    assert next_due("0 9 * * *", utc(2025, 6, 4, 9, 0, 30)) == utc(2025, 6, 5, 9)


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # July 2025: the 13th is a Sunday; the Fridays are the 4th, 11th, 18th and 25th
    assert days("0 0 13 * FRI", 2025, 7) == [4, 11, 13, 18, 25]
    assert days("0 0 13 * *", 2025, 7) == [13]
    assert days("0 0 * * FRI", 2025, 7) == [4, 11, 18, 25]
    assert days("0 0 1-7 * MON", 2025, 9) == [1, 2, 3, 4, 5, 6, 7, 8, 15, 22, 29]


def test_sunday_is_0_and_7() -> None:
    sundays = [6, 13, 20, 27]
    for expression in ("0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * 0,7"):
        assert days(expression, 2025, 7) == sundays, expression
    assert days("0 0 * * 6-7", 2025, 7) == [5, 6, 12, 13, 19, 20, 26, 27]
    assert days("0 0 * * 1-7/3", 2025, 7) == [3, 6, 7, 10, 13, 14, 17, 20, 21, 24, 27, 28, 31]


@pytest.mark.parametrize(
    ("expression", "canonical"),
    [
        ("0 9 * * MON-FRI", "0 9 * * 1,2,3,4,5"),
        ("*/20 0 1 jan,JUL 7", "0,20,40 0 1 1,7 0"),
        ("5-5 * * * *", "5 * * * *"),
        ("@weekly", "0 0 * * 0"),
        ("  0  9 * * *  ", "0 9 * * *"),
    ],
)
def test_croniter_gets_a_canonical_form(expression: str, canonical: str) -> None:
    assert canonical_cron(expression) == canonical


# --- what validate refuses, at its line ---------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "@hourly",
        "@daily",
        "0 9 * * MON",
        "0 0 1 JAN *",
        "*/15 * * * *",
        "0 0 13 * FRI",
        "0 0 * * 7",
    ],
)
def test_standard_cron_loads(tmp_path: Path, expression: str) -> None:
    sync = f'{PEOPLE}schedule: "{expression}"\n'
    project = load_project(make_project(tmp_path, people=sync))
    assert project.syncs["people"].schedule == expression
    assert is_cron(expression)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("61 * * * *", "minute '61' is outside 0-59"),
        ("0 24 * * *", "hour '24' is outside 0-23"),
        ("0 0 1 13 *", "month '13' is outside 1-12"),
        ("* * *", "3 field(s); cron has five"),
        ("0 0 * * * *", "6 field(s); cron has five (no seconds, no years)"),
        ("0 0 1 1 * 2030", "6 field(s)"),
        ("@every_minute", "'@every_minute' is not one of @hourly"),
        ("@reboot", "'@reboot' is not one of"),
        ("0 0 L * *", "day-of-month 'L' is not a number"),
        ("0 0 15W * *", "day-of-month '15W' is not standard cron"),
        ("0 0 ? * MON", "day-of-month '?' is not standard cron"),
        ("0 0 * * 1#2", "day-of-week '1#2' is not standard cron"),
        ("H * * * *", "minute 'H' is not a number"),
        ("5/15 * * * *", "minute '5/15' steps from one value: write 5-59/15"),
        ("*/0 * * * *", "has a step of 0"),
        ("0 0 * * FRI-MON", "runs backwards: write the low end first (Sunday is 0 or 7)"),
        ("0 0 * * monday", "'monday' is not a number or a name like MON"),
        ("0 0 1,,15 * *", "day-of-month '1,,15': '' is not standard cron"),
        ("0 0 30 2 *", "it never runs: no month in '2' has day 30"),
        ("0 0 31 APR,jun *", "no month in 'APR,jun' has day 31"),
        ("", "0 field(s)"),
    ],
)
def test_validate_refuses_what_cron_does_not_run(
    tmp_path: Path, expression: str, words: str
) -> None:
    sync = f'{PEOPLE}enabled: true\nschedule: "{expression}"\n'
    problem = only_problem(make_project(tmp_path, people=sync))
    assert (problem.file, problem.line) == ("syncs/people.yml", 4)
    assert problem.message.startswith("schedule: not a cron expression: ")
    assert words in problem.message
    assert "minute hour day-of-month month day-of-week" in problem.hint
    assert not is_cron(expression)


def test_an_impossible_day_of_month_still_runs_on_its_weekdays() -> None:
    assert is_cron("0 0 30 2 MON")
    assert days("0 0 30 2 MON", 2026, 2) == [2, 9, 16, 23]


# --- what is due -------------------------------------------------------------------------------

NOW = utc(2025, 6, 4, 9, 30)  # a Wednesday


@pytest.mark.parametrize(
    ("schedule", "started", "decision"),
    [
        ("@hourly", utc(2025, 6, 4, 8, 10), Decision(True, utc(2025, 6, 4, 9))),
        ("@hourly", utc(2025, 6, 4, 9, 0, 2), Decision(False, utc(2025, 6, 4, 10))),
        ("@hourly", utc(2025, 6, 4, 9), Decision(False, utc(2025, 6, 4, 10))),
        ("@hourly", utc(2025, 6, 4, 8, 59, 59), Decision(True, utc(2025, 6, 4, 9))),
        ("30 9 * * *", utc(2025, 6, 3, 9, 30), Decision(True, utc(2025, 6, 4, 9, 30))),
        ("0 9 * * MON", utc(2025, 6, 2, 9, 1), Decision(False, utc(2025, 6, 9, 9))),
        ("0 9 * * MON", utc(2025, 5, 26, 9, 1), Decision(True, utc(2025, 6, 2, 9))),
        ("@daily", dt.datetime(2025, 6, 3, 23, 59), Decision(True, utc(2025, 6, 4))),  # naive: UTC
        ("@daily", dt.datetime(2025, 6, 4, 0, 5), Decision(False, utc(2025, 6, 5))),
        # never run: due when the schedule fired in the last 31 days, else at its next time
        ("@daily", None, Decision(True, utc(2025, 6, 4))),
        ("@monthly", None, Decision(True, utc(2025, 6, 1))),
        ("0 0 1 JAN *", None, Decision(False, utc(2026, 1, 1))),
    ],
)
def test_decide(schedule: str, started: dt.datetime | None, decision: Decision) -> None:
    assert decide(schedule, started, NOW) == decision


def test_a_last_run_in_another_timezone_is_compared_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    started = dt.datetime(2025, 6, 4, 11, 5, tzinfo=paris)  # 09:05 UTC
    assert decide("@hourly", started, NOW) == Decision(False, utc(2025, 6, 4, 10))


def _syncs(tmp_path: Path, **schedules: str | None) -> list:
    texts = {
        name: PEOPLE + (f'schedule: "{schedule}"\n' if schedule else "")
        for name, schedule in schedules.items()
    }
    project = load_project(make_project(tmp_path, **texts))
    return [project.syncs[name] for name in schedules]


def _decisions(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str | None, dict]]:
    return [
        (r.event, getattr(r, "sync", None), r.fields)
        for r in caplog.records
        if r.name == "cio_sync.schedule"
    ]


def test_due_syncs_decides_and_logs_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    syncs = _syncs(
        tmp_path, hourly="@hourly", weekly="0 9 * * MON", new="@daily", plain=None, yearly="@yearly"
    )
    last_runs = {
        "hourly": {"started_at": utc(2025, 6, 4, 8, 0, 3)},
        "weekly": {"started_at": utc(2025, 6, 2, 9, 0, 3)},
        "plain": {"started_at": utc(2025, 6, 4, 9, 29)},
    }
    with caplog.at_level(logging.DEBUG, logger="cio_sync.schedule"):
        chosen = due_syncs(syncs, last_runs, NOW)
    assert [s.name for s in chosen] == ["hourly", "new"]
    assert _decisions(caplog) == [
        ("schedule.due", "hourly", {"scheduled": "2025-06-04T09:00:00+00:00"}),
        ("schedule.not_due", "weekly", {"next": "2025-06-09T09:00:00+00:00"}),
        ("schedule.due", "new", {"scheduled": "2025-06-04T00:00:00+00:00"}),
        ("schedule.none", "plain", {}),
        ("schedule.not_due", "yearly", {"next": "2026-01-01T00:00:00+00:00"}),
    ]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert messages[:2] == [
        "sync 'hourly' is due (scheduled 2025-06-04 09:00 UTC)",
        "sync 'weekly' is not due until 2025-06-09 09:00 UTC",
    ]


def test_due_syncs_says_when_nothing_is_due(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    syncs = _syncs(tmp_path, hourly="@hourly", plain=None)
    with caplog.at_level(logging.INFO, logger="cio_sync.schedule"):
        assert due_syncs(syncs, {"hourly": {"started_at": NOW}}, NOW) == []
        assert due_syncs(syncs[1:], {}, NOW) == []
    assert [r.getMessage() for r in caplog.records] == [
        "sync 'hourly' is not due until 2025-06-04 10:00 UTC",
        "nothing is due",
        "nothing is due: no enabled sync has a schedule",
    ]
    assert [r.event for r in caplog.records][1:] == ["schedule.nothing_due"] * 2


# --- the command -------------------------------------------------------------------------------

ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2)]


def _runs(project: Project) -> dict[str, int]:
    counted: dict[str, int] = {}
    for run in project.json("history")["runs"]:
        counted[run["sync"]] = counted.get(run["sync"], 0) + 1
    return counted


def test_run_due_runs_what_is_due_and_says_what_it_decided(project: Project) -> None:
    people_table(project, ROWS)
    sync = PEOPLE_SYNC.format(behavior="upsert")
    project.write_sync("people", sync + 'schedule: "* * * * *"\n')  # never run, due every minute
    project.write_sync("yearly", sync + 'schedule: "0 0 1 JAN *"\n')
    project.write_sync("manual", sync)
    assert project.cli("run", "yearly")[0] == 0  # ran after its latest time: not due now

    code, output = project.cli("run", "--due")
    assert code == 0, project.stderr
    assert output.startswith("people: ok ") and "yearly" not in output
    assert "info: sync 'people' is due (scheduled " in project.stderr
    next_year = dt.datetime.now(dt.UTC).year + 1
    assert f"sync 'yearly' is not due until {next_year}-01-01 00:00 UTC" in project.stderr
    assert "manual" not in project.stderr and "nothing is due" not in project.stderr
    assert _runs(project) == {"yearly": 1, "people": 1}
    assert {p["id"] for p in emu_get(project.emulator, "people")} >= {"u1", "u2"}

    project.write_sync("people", sync + 'schedule: "* * * * *"\nenabled: false\n')
    code, output = project.cli("run", "--due")
    assert (code, output) == (0, "")
    assert "sync 'yearly' is not due until" in project.stderr
    assert "nothing is due" in project.stderr
    assert "people" not in project.stderr
    assert _runs(project) == {"yearly": 1, "people": 1}

    code, output = project.cli("-q", "run", "--due")
    assert (code, output, project.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["people", "--all"], "give sync names or --all, not both"),
        (["people", "--due"], "give sync names or --due, not both"),
        (["--all", "--due"], "give --all or --due, not both"),
        (["people", "--all", "--due"], "give sync names or --all, not both"),
        ([], "name the syncs to run, or give --all or --due"),
    ],
)
def test_contradictory_selections_are_usage_errors(
    tmp_path: Path, args: list[str], words: str
) -> None:
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "run", *args])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"error: {words}")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
