"""The one way to an exam's images: media types by magic bytes, PNG for exports, one exam's images only,
and an exam key that stops working within its time to live once retention destroyed it."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from hall_server.store import crypto, db, exams, frames
from hall_server.store.screens import Screens, as_png, media_type

from support import png_bytes


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, fmt)
    return out.getvalue()


@pytest.fixture
def store(exam):
    connection = db.connect(exam.data_dir)
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_encoded("PNG"), "image/png"),
        (_encoded("JPEG"), "image/jpeg"),
        (_encoded("WEBP"), "image/webp"),
        (b"GIF89a" + b"\x00" * 20, "application/octet-stream"),  # never guessed as an image type
        (b"", "application/octet-stream"),
    ],
)
def test_media_type_comes_from_the_magic_bytes(body, expected):
    assert media_type(body) == expected


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_an_export_gets_png_whatever_was_stored(fmt):
    converted = as_png(_encoded(fmt))
    assert media_type(converted) == "image/png"
    with Image.open(io.BytesIO(converted)) as image:
        assert image.size == (8, 8)
    png = _encoded("PNG")
    assert as_png(png) is png  # the agent's own PNG is handed on byte for byte


def test_an_exams_images_decrypt_and_a_missing_one_is_unavailable(exam, store):
    screens = Screens.of_data_dir(exam.data_dir)
    key = screens.exam_key(store, exam.exam_id)
    body = png_bytes(seed=3)
    sha, _ = screens.blobs.put(exam.exam_id, key, body)
    exam_screens = screens.exam(store, exam.exam_id)
    assert exam_screens.image(sha) == body
    assert exam_screens.find("0" * 64) is None
    with pytest.raises(frames.ScreenUnavailable):
        exam_screens.image("0" * 64)
    with pytest.raises(frames.ScreenUnavailable):
        exam_screens.screen(1, "never-sent")
    assert exam_screens.find_screen(1, "never-sent") is None


def test_a_destroyed_key_stops_working_once_its_time_to_live_ran_out(exam, store):
    screens = Screens.of_data_dir(exam.data_dir)
    cached = Screens(screens.blobs, screens.master_key, key_ttl_s=3600)
    uncached = Screens(screens.blobs, screens.master_key, key_ttl_s=0)
    key = cached.exam_key(store, exam.exam_id)
    assert uncached.exam_key(store, exam.exam_id) == key
    store.execute(
        "UPDATE exam_key SET wrapped = NULL, destroyed_at = 'now' WHERE exam_id = ?", [exam.exam_id]
    )
    with pytest.raises(crypto.KeyUnavailable):
        uncached.exam(store, exam.exam_id)
    assert cached.exam_key(store, exam.exam_id) == key  # within its time to live, as documented
    with pytest.raises(crypto.KeyUnavailable):
        exams.exam_key(store, screens.master_key, exam.exam_id)
