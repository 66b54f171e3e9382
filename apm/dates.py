"""The days APM accepts from people: far enough apart for any plan, clear of the calendar's edges.

Periods are turned into times with "the next day at 00:00", which overflows on 9999-12-31; a bound well
inside the calendar keeps every such step safe and answers a typo with a clear error. Times are bounded
by the same days once moved to UTC: ``9999-12-31T23:59:59-23:59`` is a valid ISO 8601 time whose UTC
instant lies in year 10000, which neither Python nor the database can hold.
"""

from __future__ import annotations

import datetime

from django.core.exceptions import ValidationError

DAY_MIN = datetime.date(1900, 1, 1)
DAY_MAX = datetime.date(2999, 12, 31)
DAY_RANGE_MESSAGE = f"Give a day between {DAY_MIN} and {DAY_MAX}."
MOMENT_RANGE_MESSAGE = f"Give a time between {DAY_MIN}T00:00:00Z and {DAY_MAX}T23:59:59Z."


def day_in_range(day: datetime.date) -> bool:
    return DAY_MIN <= day <= DAY_MAX


def moment_in_range(moment: datetime.datetime) -> bool:
    """Whether ``moment`` falls on a day APM accepts, in UTC (a naive time is taken as it is)."""
    try:
        utc = moment.astimezone(datetime.UTC) if moment.tzinfo is not None else moment
    except OverflowError:
        return False
    return day_in_range(utc.date())


def day_validate(day: datetime.date) -> None:
    """A model field validator: the day is one APM accepts."""
    if not day_in_range(day):
        raise ValidationError(DAY_RANGE_MESSAGE, code="day_range")


def days_validate(**days: datetime.date | None) -> None:
    """Refuse the named days APM does not accept, each under its name (``start_date=...``)."""
    errors = {
        name: [ValidationError(DAY_RANGE_MESSAGE, code="day_range")]
        for name, day in days.items()
        if day is not None and not day_in_range(day)
    }
    if errors:
        raise ValidationError(errors)
