"""The report's figures: a history axis that spans the uploads, not years."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from tasks.present.html_report import time_axis


def _span(times: list[datetime]) -> timedelta:
    fig, ax = plt.subplots()
    ax.plot(times, range(len(times)), "o")
    time_axis(ax, times)
    lo, hi = (mdates.num2date(v) for v in ax.get_xlim())
    plt.close(fig)
    return hi - lo


def test_history_axis_spans_the_data_with_a_small_margin():
    night = datetime(2025, 11, 30, 20, 51, tzinfo=UTC)
    assert _span([night]) == timedelta(hours=1)  # one version: half an hour either side
    minutes = [night, night + timedelta(minutes=4)]
    assert _span(minutes) == timedelta(hours=1, minutes=4)
    nights = [night + timedelta(days=d) for d in range(10)]
    assert timedelta(days=9) < _span(nights) < timedelta(days=11)  # 8 % either side
