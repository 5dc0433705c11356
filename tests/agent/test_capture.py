"""The capture loop with an injected grab: images when the screen changed, "unchanged" records otherwise."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from agent.capture import CaptureLoop, CaptureSettings, capture_settings
from agent.encode import quantise_gray4
from agent.grab import MonitorFrame
from agent.spool import Spool
from agent.updates import apply_tiles
from invigil import payloads, tiles

from agent_screens import PARAGRAPHS, render_page


class FakeScreens:
    """A grab callable whose pixels the test sets."""

    def __init__(self, *pages: np.ndarray, bgrx: bool = False) -> None:
        self.pages = list(pages)
        self.bgrx = bgrx  # like mss: fresh BGRX bytes on every grab

    def __call__(self) -> list[MonitorFrame]:
        frames, left = [], 0
        for index, page in enumerate(self.pages):
            height, width = page.shape[:2]
            if self.bgrx:
                pixels = np.dstack([page[..., ::-1], np.zeros((height, width), dtype=np.uint8)])
                frames.append(MonitorFrame(index, left, 0, width, height, bgrx=pixels))
            else:
                frames.append(MonitorFrame(index, left, 0, width, height, page))
            left += width
        return frames


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def records(spool: Spool) -> list:
    out = []
    while (record := spool.peek()) is not None:
        out.append(record)
        spool.ack(record.seq)
    return out


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def test_first_tick_spools_a_valid_capture_and_thumbnail(spool):
    page = render_page()
    loop = CaptureLoop(FakeScreens(page), spool)
    outcomes = loop.tick("start", focused_app="firefox", window_title="Exam - Moodle")
    assert [o.kind for o in outcomes] == ["image"]
    image, thumb = records(spool)
    assert image.kind == "image" and thumb.kind == "thumbnail"
    meta = payloads.parse_capture_meta(image.meta["capture_meta"])  # what the server will parse
    assert (meta.monitor, meta.width, meta.height, meta.trigger) == (0, 1280, 800, "start")
    assert meta.window_title == "Exam - Moodle"
    assert meta.sha256 == hashlib.sha256(image.body).hexdigest()
    assert image.meta["media_type"] == "image/png"
    assert Image.open(io.BytesIO(image.body)).size == (1280, 800)
    assert thumb.meta["capture_id"] == image.meta["capture_id"] == outcomes[0].record_id
    assert Image.open(io.BytesIO(thumb.body)).size == (240, 150)


def test_unchanged_screen_sends_a_tiny_record_pointing_at_the_last_image(spool):
    page = render_page(clock="10:41:07")
    screens = FakeScreens(page)
    loop = CaptureLoop(screens, spool)
    first = loop.tick()[0]
    for second in range(8, 20):  # a clock ticking for a while never adds up to a change
        screens.pages = [render_page(clock=f"10:41:{second:02d}")]
        assert loop.tick()[0].kind == "unchanged"
    spooled = records(spool)
    unchanged = spooled[2:]
    assert len(unchanged) == 12 and all(r.kind == "unchanged" and r.body == b"" for r in unchanged)
    record = payloads.parse_unchanged(unchanged[0].meta["unchanged"])
    assert record.since_capture_id == first.record_id
    assert len(json.dumps(unchanged[0].meta)) < 300


def test_changed_text_sends_a_new_image(spool):
    screens = FakeScreens(render_page(PARAGRAPHS[:1]))
    loop = CaptureLoop(screens, spool, CaptureSettings(send_thumbnails=False))
    loop.tick()
    screens.pages = [render_page(PARAGRAPHS)]
    outcome = loop.tick()[0]
    assert outcome.kind == "image" and outcome.change.changed
    assert [r.kind for r in records(spool)] == ["image", "image"]


def test_each_monitor_is_judged_alone_and_a_new_layout_forces_images(spool):
    screens = FakeScreens(render_page(), render_page(size=(1024, 768)))
    loop = CaptureLoop(screens, spool, CaptureSettings(send_thumbnails=False))
    assert [o.kind for o in loop.tick()] == ["image", "image"]
    screens.pages[1] = render_page(PARAGRAPHS, size=(1024, 768))
    assert [o.kind for o in loop.tick()] == ["unchanged", "image"]
    screens.pages.append(render_page(size=(800, 600)))  # a projector was plugged in
    outcomes = loop.tick()
    assert [o.kind for o in outcomes] == ["image", "image", "image"]
    triggers = [payloads.parse_capture_meta(r.meta["capture_meta"]).trigger for r in records(spool)[-3:]]
    assert triggers == ["monitors"] * 3


def test_an_unchanged_screen_still_gets_an_image_every_max_unchanged_s(spool):
    clock = FakeClock()
    loop = CaptureLoop(FakeScreens(render_page()), spool, CaptureSettings(max_unchanged_s=60), clock=clock)
    kinds = []
    for _ in range(7):
        kinds.append(loop.tick()[0].kind)
        clock.now += timedelta(seconds=15)
    assert kinds == ["image", "unchanged", "unchanged", "unchanged", "image", "unchanged", "unchanged"]


def test_run_ticks_until_stopped_and_reports_errors(spool):
    calls = []

    def flaky_grab():
        calls.append(1)
        if len(calls) == 2:
            raise OSError("X server went away")
        if len(calls) >= 4:
            stop.set()
        return FakeScreens(render_page())()

    stop, errors = threading.Event(), []
    CaptureLoop(flaky_grab, spool).run(stop, interval_s=0.01, on_error=errors.append)
    assert len(calls) == 4 and [str(e) for e in errors] == ["X server went away"]
    kinds = [r.kind for r in records(spool)]
    assert kinds == ["image", "thumbnail", "unchanged", "unchanged"]


def test_a_long_emoji_window_title_is_shortened_to_fit_the_header(spool):
    loop = CaptureLoop(FakeScreens(render_page()), spool, CaptureSettings(send_thumbnails=False))
    loop.tick(window_title="📝" * 600)
    meta = payloads.parse_capture_meta(records(spool)[0].meta["capture_meta"])
    assert meta.window_title and set(meta.window_title) == {"📝"}


def test_grabbed_bgrx_frames_give_the_same_verdicts_and_a_png_within_one_gray_level(spool, tmp_path):
    """The BGRX fast path (every real grab) against the RGB path on the same screens."""
    pages = [render_page(clock="10:41:07"), render_page(clock="10:41:08"), render_page(clock="10:41:08")]
    pages.append(render_page(PARAGRAPHS, clock="10:41:09"))
    pages.append(pages[-1].copy())
    kinds = {}
    bodies = {}
    for bgrx in (False, True):
        screens = FakeScreens(pages[0], bgrx=bgrx)
        loop_spool = Spool(tmp_path / f"spool-{bgrx}")
        loop = CaptureLoop(screens, loop_spool)
        kinds[bgrx] = []
        for page in pages:
            screens.pages = [page]
            kinds[bgrx].append(loop.tick()[0].kind)
        bodies[bgrx] = [r.body for r in records(loop_spool) if r.kind == "image"]
    assert kinds[False] == kinds[True] == ["image", "unchanged", "unchanged", "image", "unchanged"]
    for rgb_png, bgrx_png in zip(bodies[False], bodies[True], strict=True):
        a = np.asarray(Image.open(io.BytesIO(rgb_png))).astype(int)
        b = np.asarray(Image.open(io.BytesIO(bgrx_png))).astype(int)
        # Pillow's and our luma differ by at most one gray level, so at most one of the 16 levels here.
        assert np.abs(a - b).max() <= 17 and (a != b).mean() < 0.01


def test_bgrx_grabs_reuse_the_last_grab_but_still_see_every_change(spool):
    page = render_page(PARAGRAPHS, clock="10:41:07")
    screens = FakeScreens(page, bgrx=True)
    loop = CaptureLoop(screens, spool, CaptureSettings(send_thumbnails=False))
    assert loop.tick()[0].kind == "image"
    assert [loop.tick()[0].kind for _ in range(3)] == ["unchanged"] * 3  # identical grabs
    edited = page.copy()
    edited[200:203, 80:1200] = 0  # a three-pixel rule across the page: few strips, a real change
    screens.pages = [edited]
    outcome = loop.tick()[0]
    assert outcome.kind == "image" and outcome.change.changed
    screens.pages = [page]  # and back
    assert loop.tick()[0].kind == "image"
    screens.pages = [render_page(size=(1024, 768))]  # another resolution
    assert loop.tick()[0].change.reason == "screen size changed"


def typed(words: int, **kwargs) -> np.ndarray:
    """The exam page with ``words`` words of the second paragraph typed."""
    return render_page((PARAGRAPHS[0], " ".join(PARAGRAPHS[1].split()[:words])), **kwargs)


def sent_images(spool: Spool) -> list[tuple[dict, bytes]]:
    return [(json.loads(r.meta["capture_meta"]), r.body) for r in records(spool) if r.kind == "image"]


def test_after_a_whole_screen_only_the_changed_tiles_go_and_they_rebuild_the_screen(spool):
    screens = FakeScreens(typed(10))
    loop = CaptureLoop(screens, spool, CaptureSettings(send_thumbnails=False))
    first = loop.tick()[0]
    levels = [quantise_gray4(screens()[0].rgb)]
    outcomes = []
    for words in (18, 26, 34):
        screens.pages = [typed(words)]
        outcomes.append(loop.tick()[0])
        levels.append(quantise_gray4(screens()[0].rgb))
    assert first.tiles == 0 and all(o.kind == "image" and 0 < o.tiles < 20 for o in outcomes)
    assert all(o.body_bytes < first.body_bytes / 3 for o in outcomes)
    images = sent_images(spool)
    screen = np.asarray(Image.open(io.BytesIO(images[0][1])))
    for (meta, body), want, outcome in zip(images[1:], levels[1:], outcomes, strict=True):
        indices = tiles.decode_map(meta["tiles"], *tiles.grid(meta["width"], meta["height"], meta["tile"]))
        assert len(indices) == outcome.tiles and (meta["width"], meta["height"]) == screen.shape[::-1]
        packed = np.asarray(Image.open(io.BytesIO(body))) // 17
        screen = apply_tiles(screen // 17, packed, indices, meta["tile"]) * 17
        assert np.array_equal(screen // 17, want)  # pixel for pixel what a whole screen would carry


def test_each_update_names_the_image_before_it(spool):
    screens = FakeScreens(typed(10))
    loop = CaptureLoop(screens, spool, CaptureSettings(send_thumbnails=False))
    ids = [loop.tick()[0].record_id]
    for words in (18, 26):
        screens.pages = [typed(words)]
        ids.append(loop.tick()[0].record_id)
    images = [r for r in records(spool) if r.kind == "image"]
    assert [r.meta.get("base") for r in images] == [None, ids[0], ids[1]]
    assert [json.loads(r.meta["capture_meta"]).get("base") for r in images] == [None, ids[0], ids[1]]


@pytest.mark.parametrize(
    "settings, steps, whole",
    [
        (CaptureSettings(key_every_s=60), 6, [0, 4]),  # 15 s apart: a whole screen every minute
        (CaptureSettings(max_chain=2), 6, [0, 3]),  # at most two updates in a row
        (CaptureSettings(key_share=0.0), 3, [0, 1, 2]),  # any update is "too big"
        (CaptureSettings(tile=None), 3, [0, 1, 2]),  # a server without updates
    ],
)
def test_whole_screens_come_when_due(spool, settings, steps, whole):
    clock = FakeClock()
    screens = FakeScreens(typed(4))
    loop = CaptureLoop(screens, spool, replace(settings, send_thumbnails=False), clock=clock)
    got = []
    for step in range(steps):
        screens.pages = [typed(4 + 8 * step)]
        got.append(loop.tick()[0].tiles)
        clock.now += timedelta(seconds=15)
    assert [i for i, n in enumerate(got) if n == 0] == whole


def test_a_lost_base_or_a_dropped_image_makes_the_next_image_whole(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=40_000)
    screens = FakeScreens(typed(4))
    loop = CaptureLoop(screens, spool, CaptureSettings(send_thumbnails=False))
    loop.tick()
    screens.pages = [typed(12)]
    assert loop.tick()[0].tiles > 0
    loop.send_key_images()  # the uploader heard "unknown_base"
    screens.pages = [typed(20)]
    assert loop.tick()[0].tiles == 0
    screens.pages = [typed(28)]
    assert loop.tick()[0].tiles > 0
    while spool.images_dropped == 0:  # fill the spool until its cap drops an image
        spool.append({"kind": "image", "capture_id": "filler00"}, b"x" * 9000)
    screens.pages = [typed(36)]
    assert loop.tick()[0].tiles == 0


def test_a_change_the_16_levels_cannot_show_is_an_unchanged_record(spool):
    panel = render_page(PARAGRAPHS)
    panel[100:400, 100:600] = 226  # light gray: gray levels 225..244 are all level 14
    screens = FakeScreens(panel)
    loop = CaptureLoop(screens, spool, CaptureSettings(send_thumbnails=False))
    loop.tick()
    lighter = panel.copy()
    lighter[100:400, 100:600] = 243  # 17 gray values lighter: the change test sees it
    screens.pages = [lighter]
    outcome = loop.tick()[0]
    assert outcome.change.changed and outcome.kind == "unchanged"
    screens.pages = [lighter]
    assert loop.tick()[0].kind == "unchanged"  # and it is the new reference, not a change every tick


def test_the_server_offer_decides_whether_updates_are_sent():
    assert capture_settings(None).tile is None
    assert capture_settings({"tiles": [128]}).tile is None
    offered = capture_settings({"tiles": [16, 32, 64, 128, 256], "max_chain": 120})
    assert offered.tile == 64 and offered.max_chain == CaptureSettings().max_chain
    assert capture_settings({"tiles": [64], "max_chain": 10}).max_chain == 10


@pytest.mark.parametrize(
    "size, want", [((1920, 1080), (240, 135)), ((1366, 768), (240, 135)), ((200, 120), (200, 120))]
)
def test_the_live_view_picture_is_240_px_wide_on_any_screen(spool, size, want):
    loop = CaptureLoop(FakeScreens(render_page(size=size)), spool)
    loop.tick()
    thumb = [r for r in records(spool) if r.kind == "thumbnail"][0]
    image = Image.open(io.BytesIO(thumb.body))
    assert (image.size, image.mode, image.format) == (want, "L", "JPEG")
