"""The days APM accepts from people: far enough apart for any plan, clear of the calendar's edges.

Periods are turned into times with "the next day at 00:00", which overflows on 9999-12-31; a bound well
inside the calendar keeps every such step safe and answers a typo with a clear error.
"""

from __future__ import annotations

import datetime

DAY_MIN = datetime.date(1900, 1, 1)
DAY_MAX = datetime.date(2999, 12, 31)
DAY_RANGE_MESSAGE = f"Give a day between {DAY_MIN} and {DAY_MAX}."


def day_in_range(day: datetime.date) -> bool:
    return DAY_MIN <= day <= DAY_MAX
