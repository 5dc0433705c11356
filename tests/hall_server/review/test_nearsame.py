"""Near-identical screens (hall_server/review/reports/nearsame.py): which captures repeat the one before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hall_server.review.reports import nearsame
from hall_server.review.reports.timeline import Frame

T0 = datetime(2026, 6, 12, 9, 0, tzinfo=UTC)


def frame(n: int, sha: str, thumb: str | None = None, title: str = "Ans - q1", monitor: int = 0) -> Frame:
    return Frame(
        f"c{n}",
        monitor,
        T0 + timedelta(seconds=5 * n),
        "",
        sha,
        thumb,
        800,
        600,
        "interval",
        "firefox",
        title,
    )


@pytest.mark.parametrize(
    ("frames", "shares", "repeating"),
    [
        ([frame(0, "a"), frame(1, "b"), frame(2, "c")], {}, set()),
        # the same image sent again (a focus change back to the same page)
        ([frame(0, "a"), frame(1, "a"), frame(2, "a")], {}, {"c1", "c2"}),
        # identical thumbnails: the change is too small to see at the filmstrip's size
        ([frame(0, "a", "t"), frame(1, "b", "t")], {}, {"c1"}),
        # a tile update of a blinking cursor (1 % of the screen) repeats; a scroll (30 %) does not
        ([frame(0, "a"), frame(1, "b"), frame(2, "c")], {"c1": 0.01, "c2": 0.3}, {"c1"}),
        # another window title is another screen, however alike
        ([frame(0, "a"), frame(1, "a", title="Ans - q2")], {}, set()),
        # each monitor has its own runs
        ([frame(0, "a"), frame(1, "a", monitor=1), frame(2, "a", monitor=1)], {}, {"c2"}),
    ],
)
def test_repeats(frames, shares, repeating):
    assert nearsame.repeats(frames, shares) == repeating
