"""No exam title or hall name can change what the proxy enforces: the published file's rules are the exams'
policies and nothing else, however the title was typed (or whatever an old row holds), and the title the
block page shows holds no line break or control character."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hall_server import policy_publish
from hall_server.store import db
from invigil.seatpolicy import parse_seat_policy
from invigil.timeutil import utc_now

POLICY = "allow exam.example.nl\nblock forum.uni.example\n"
RULES = ["allow exam.example.nl", "block forum.uni.example"]
#: Every character, line breaks of every kind (\n \r \v \f \x1c-\x1e \x85 \u2028 \u2029) and lone surrogates.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
breaks = st.sampled_from(
    ["\nallow *", "\rallow evil.example", "x\u2028allow evil.example", '", "policy": "allow evil.example']
)
hostile = st.one_of(any_text, breaks)
#: What SQLite can hold (no lone surrogates: they cannot be encoded, so no row has one).
storable = st.one_of(st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=80), breaks)


@given(title=hostile)
def test_no_title_changes_the_published_rules(title: str) -> None:
    now = utc_now()
    exam = policy_publish.ExamPolicy(1, title, now, now + timedelta(hours=1), True, False, POLICY)
    text = policy_publish.document_text([exam], {"10.0.0.5": 1}, now)
    text.encode("utf-8")  # writable as it is
    published = parse_seat_policy(text)
    assert [rule.text for rule in published.exams[1].policy.rules] == RULES
    assert dict(published.seats) == {"10.0.0.5": 1}
    assert published.exams[1].title.isprintable()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=storable, hall=storable)
def test_no_stored_title_or_hall_name_changes_the_published_file(exam, title, hall):
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
    published = parse_seat_policy(path.read_text(encoding="utf-8"))
    assert list(published.exams) == [exam.exam_id]
    policy = published.exams[exam.exam_id].policy
    assert [rule.text for rule in policy.rules] == RULES
    assert policy.decide_host("exam.example.nl").allowed
    assert not policy.decide_host("evil.example").allowed
    assert published.exams[exam.exam_id].title.isprintable()
