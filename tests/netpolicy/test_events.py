"""The site-event queue (netpolicy.events) with an injected post: bounded, drops oldest, retries; and the
events it builds, which the hall server must accept."""

from __future__ import annotations

import threading
import time

import pytest

from invigil.payloads import parse_site_events
from netpolicy.events import Refused, SiteEventSender, batches, make_site_event, read_token


def wait_for(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


def test_events_are_wire_valid_even_from_odd_input():
    event = make_site_event(
        "::ffff:10.0.0.7", "Chat.ChatGPT.com", False, "r" * 500, "http://x/" + "\x00" * 3000
    )
    (parsed,) = parse_site_events({"events": [event.as_wire()]})
    assert (
        parsed.client_ip == "10.0.0.7" and parsed.host == "chat.chatgpt.com" and parsed.decision == "blocked"
    )
    assert len(parsed.reason) == 200 and "\x00" not in parsed.url and len(parsed.url) <= 2048
    with pytest.raises(ValueError):
        make_site_event("not-an-ip", "x", True, "")


@pytest.mark.parametrize(
    ("host", "sent"),
    [
        ("EXAM.example.NL.", "exam.example.nl"),
        ("2130706433", "127.0.0.1"),
        ("[::ffff:10.0.0.9]", "10.0.0.9"),
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ('=HYPERLINK("http://evil.example")', "invalid"),  # a TLS server name is the client's to choose
        ("exam..example.nl", "invalid"),
        ("", "invalid"),
    ],
)
def test_every_host_is_sent_in_a_form_the_hall_server_accepts(host, sent):
    event = make_site_event("10.0.0.7", host, False, "invalid TLS server name")
    (parsed,) = parse_site_events({"events": [event.as_wire()]})
    assert parsed.host == sent
    if sent == "invalid":
        assert parsed.reason.startswith("invalid TLS server name (host as seen: ")
        assert repr(host[:60]) in parsed.reason


def test_the_sender_needs_the_service_token(tmp_path):
    with pytest.raises(ValueError, match="only with its service token"):
        SiteEventSender("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="no service token file given"):
        read_token("")
    (tmp_path / "service.token").write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        read_token(str(tmp_path / "service.token"))
    (tmp_path / "service.token").write_text("s3cret\n")
    assert read_token(str(tmp_path / "service.token")) == "s3cret"


def test_batches_respect_count_and_size():
    events = [{"id": str(i), "pad": "x" * 100} for i in range(10)]
    assert [len(b) for b in batches(events, 4, 10_000)] == [4, 4, 2]
    assert all(len(b) <= 2 for b in batches(events, 200, 300))


def test_full_queue_drops_the_oldest_and_everything_else_arrives_after_an_outage():
    received: list[str] = []
    server_up = threading.Event()

    def post(batch):
        if not server_up.is_set():
            raise OSError("connection refused")
        received.extend(event["reason"] for event in batch)

    sender = SiteEventSender(
        "http://127.0.0.1:9", max_queue=5, flush_interval_s=0.02, retry_max_s=0.1, post=post
    )
    sender.start()
    for index in range(8):
        sender.add(make_site_event("10.0.0.7", "x.example", False, f"event {index}"))
    assert sender.dropped == 3
    server_up.set()
    assert wait_for(lambda: len(received) == 5)
    assert received == [f"event {index}" for index in range(3, 8)]
    sender.close()


def test_a_refused_batch_is_dropped_not_retried_forever():
    calls = []

    def post(batch):
        calls.append(len(batch))
        raise Refused("HTTP 400")

    sender = SiteEventSender("http://127.0.0.1:9", flush_interval_s=0.02, post=post).start()
    sender.add(make_site_event("10.0.0.7", "x.example", True, ""))
    assert wait_for(lambda: sender.pending() == 0)
    sender.close()
    assert calls == [1]
