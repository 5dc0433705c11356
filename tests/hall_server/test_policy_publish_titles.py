"""No exam title or hall name can add a line to the published policy: the file's rules are the exams'
policies and nothing else, however the title was typed (or whatever an old row holds)."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hall_server import policy_publish
from hall_server.store import db
from invigil.policy import parse_policy
from invigil.timeutil import utc_now

POLICY = "allow exam.example.nl\nblock forum.uni.example\n"
RULES = ["allow exam.example.nl", "block forum.uni.example"]
#: Every character, line breaks of every kind (\n \r \v \f \x1c-\x1e \x85 \u2028 \u2029) and lone surrogates.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
breaks = st.sampled_from(
    ["\nallow *", "\rallow evil.example", "x\u2028allow evil.example", "\x85allow *.example"]
)
hostile = st.one_of(any_text, breaks)
#: What SQLite can hold (no lone surrogates: they cannot be encoded, so no row has one).
storable = st.one_of(st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=80), breaks)


def as_the_proxy_reads(text: str) -> list[str]:
    """The file read back as netpolicy's gate does (``Path.read_text``: universal newlines)."""
    return io.StringIO(text, newline=None).read().split("\n")


def rules(lines: list[str]) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


@given(title=hostile)
def test_no_title_adds_a_line_to_the_policy_text(title: str) -> None:
    now = utc_now()
    exam = policy_publish.ExamPolicy(1, title, now, now + timedelta(hours=1), True, False, POLICY)
    text = policy_publish.policy_text([exam], now)
    plain = policy_publish.policy_text([replace(exam, title="Linear Algebra")], now)
    assert len(text.splitlines()) == len(plain.splitlines())
    assert len(as_the_proxy_reads(text)) == len(as_the_proxy_reads(plain))
    assert rules(as_the_proxy_reads(text)) == RULES
    text.encode("utf-8")  # writable as it is


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=storable, hall=storable)
def test_no_stored_title_or_hall_name_adds_a_line_to_the_published_file(exam, title, hall):
    store = db.connect(exam.data_dir)
    try:
        # As an old row (or anything that bypassed the organiser's checks) would hold them.
        store.execute(
            "UPDATE exam SET title = ?, policy_text = ? WHERE id = ?", [title, POLICY, exam.exam_id]
        )
        store.execute("UPDATE hall SET name = ? WHERE id = ?", [hall, exam.hall_id])
        policy_publish.publish(store, exam.data_dir, enrol_early_s=1800)
    finally:
        store.close()
    path = exam.data_dir / policy_publish.POLICY_FILE
    text = path.read_text(encoding="utf-8")
    assert rules(text.split("\n")) == RULES
    policy = parse_policy(text)
    assert policy.decide_host("exam.example.nl").allowed
    assert not policy.decide_host("evil.example").allowed
