"""Crontab expressions with the day-of-week numbers every crontab uses (0 or 7 = Sunday).

APScheduler 3's ``CronTrigger.from_crontab`` reads a numeric day of week Monday-first, so
"0 2 * * 1" would fire on Tuesdays (agronholm/apscheduler#286, fixed only in 4.0). Every
schedule in the product goes through :func:`cron_trigger`, which spells the days out as names.
"""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(cron: str) -> CronTrigger:
    """A UTC trigger for a five-field crontab; ValueError with the reason when it is not one."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(
            f"a crontab has 5 fields (minute hour day month weekday), not {len(fields)}"
        )
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=weekday_names(weekday),
        timezone=UTC,
    )


def next_run(cron: str, after: datetime | None = None) -> datetime | None:
    return cron_trigger(cron).get_next_fire_time(None, after or datetime.now(UTC))


def weekday_names(field: str) -> str:
    """The day-of-week field as APScheduler day names, with crontab's numbering."""
    days: set[int] = set()
    for element in field.lower().split(","):
        days |= _days(element)
    if days == set(range(7)):
        return "*"
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def _days(element: str) -> set[int]:
    base, _, step_text = element.partition("/")
    step = _number(step_text, "step") if step_text else 1
    if step < 1:
        raise ValueError(f"the step in {element!r} must be at least 1")
    if base == "*":
        first, last = 0, 6
    elif "-" in base:
        start, _, end = base.partition("-")
        first, last = _day(start), _day(end)
        if last == 0 < first:  # 7 and sun end a range as the last day
            last = 7
        if last < first:
            raise ValueError(f"the range {base!r} runs backwards")
    else:
        first = _day(base)
        last = 6 if step_text else first
    return {d % 7 for d in range(first, last + 1, step)}


def _day(text: str) -> int:
    text = text.strip()
    if text in DAY_NAMES:
        return DAY_NAMES.index(text)
    value = _number(text, "day of week")
    if not 0 <= value <= 7:
        raise ValueError(f"day of week {value} is not between 0 and 7")
    return value % 7


def _number(text: str, what: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{what} {text!r} is not a number")
    return int(text)
