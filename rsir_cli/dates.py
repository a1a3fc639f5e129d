"""Acquisition dates: one ISO 8601 spelling in the store, and what the time-aware models are fed.

The store keeps each sample's date as text: ``YYYY-MM-DD``, ``YYYY`` where only the year is known
(ForestNet), ``""`` where it is unknown. A model that takes the date (Prithvi-EO-2.0 ``-tl``) gets
(year, day of year); a year-only date is fed as 1 July of that year (the middle of the year), which
the store's provenance says.
"""

from __future__ import annotations

import datetime as dt
import re

#: the day a year-only date stands for
YEAR_ONLY = (7, 1)

_PATTERNS = (
    re.compile(r"^(?P<y>\d{4})[-:/](?P<m>\d{1,2})[-:/](?P<d>\d{1,2})(?:[T ].*)?$"),  # 2020-06-01, 2020:06:01 10:10:31
    re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?:T\d{6}.*)?$"),  # 20200601, 20200601T101031
    re.compile(r"^(?P<y>\d{4})$"),  # a year alone
)
_IN_NAME = re.compile(r"(?<!\d)(20\d{2}|19\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?:T\d{6})?(?!\d)")


def iso_date(text: object) -> str:
    """``text`` as ``YYYY-MM-DD`` (or ``YYYY``), or ``""`` when it is not a date."""
    value = str(text or "").strip()
    for pattern in _PATTERNS:
        match = pattern.match(value)
        if not match:
            continue
        year = int(match.group("y"))
        if "m" not in match.groupdict():
            return f"{year:04d}" if 1900 <= year <= 2100 else ""
        try:
            return dt.date(year, int(match.group("m")), int(match.group("d"))).isoformat()
        except ValueError:
            return ""
    return ""


def date_in_name(name: str) -> str:
    """A date written into a file name (``S2B_MSIL2A_20200601T101559_...``, ``T33UUP_20200601``), or ``""``."""
    match = _IN_NAME.search(name)
    if not match:
        return ""
    return iso_date(match.group(1) + match.group(2) + match.group(3))


def model_date(text: str) -> dt.date | None:
    """The date a time-aware model is fed for a stored date (year-only: 1 July), or None."""
    value = iso_date(text)
    if not value:
        return None
    if len(value) == 4:
        return dt.date(int(value), *YEAR_ONLY)
    return dt.date.fromisoformat(value)
