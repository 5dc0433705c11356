"""Checking one rendered report page: recompute the chains it embeds, then compare every row it shows of a
chained record (``hall_server.review.reports.shown``) with the verified record, so an edit anywhere a reader
looks (a window title, a host, a time, a count, a head) is named with its line and section.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from hall_server.review.reports import shown
from hall_server.review.reports.render import chain_from_html
from hall_server.store import chain


@dataclass(frozen=True)
class Problem:
    """Something an export shows that its chain does not vouch for: where (file, line, section) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(frozen=True)
class SessionHead:
    session_id: int
    student_number: str
    head: str | None
    length: int
    #: False when the chain is broken: the head is only what the export claims.
    verified: bool = True


@dataclass
class ExportCheck:
    """The outcome of :func:`verify_export`: the heads to compare with a PDF, and every problem found."""

    sessions: int = 0
    records: int = 0
    rows: int = 0
    heads: list[SessionHead] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: Rows that show records stored before the chain existed (nothing to check them against).
    unchained_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class PageCheck:
    student_number: str
    chains: list[chain.SessionChain]
    #: Records of unbroken chains (and of broken ones before the break) by (session, seq).
    verified: dict[tuple[int, int], chain.ChainRecord]
    broken: set[int]
    check: ExportCheck


def _chains_of_page(html: str, where: str) -> tuple[str, list[chain.SessionChain]]:
    try:
        payload = chain_from_html(html)
        sessions = [chain.SessionChain.from_json(session) for session in payload["sessions"]]
        return str(payload.get("student_number", "")), sessions
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def check_page(html: str, where: str) -> PageCheck:
    """Verify the chains a page embeds, then every row it shows against the verified records."""
    student_number, chains = _chains_of_page(html, where)
    check = ExportCheck(sessions=len(chains), records=sum(len(c.records) for c in chains))
    verified: dict[tuple[int, int], chain.ChainRecord] = {}
    broken: set[int] = set()
    for session_chain in chains:
        problem = chain.verify_chain(session_chain)
        check.heads.append(
            SessionHead(
                session_chain.session_id,
                student_number,
                session_chain.head,
                session_chain.length,
                problem is None,
            )
        )
        if problem is not None:
            broken.add(session_chain.session_id)
            check.problems.append(Problem(f"{where} (its embedded chained records)", str(problem)))
        for record in session_chain.records:
            if problem is None or record.seq < problem.seq:
                verified[(session_chain.session_id, record.seq)] = record
    page = PageCheck(student_number, chains, verified, broken, check)
    _check_rows(page, shown.read_page(html), where)
    return page


def _place(where: str, row: shown.ShownRow) -> str:
    section = row.section[:1].lower() + row.section[1:]
    return f"{where} line {row.line} ({section})"


def _check_rows(page: PageCheck, rows: list[shown.ShownRow], where: str) -> None:
    rows_check = _RowsCheck(page, where)
    for row in rows:
        rows_check.row(row)
    rows_check.finish()


class _RowsCheck:
    """The rows of one page against its verified records, then what the complete lists must hold."""

    def __init__(self, page: PageCheck, where: str) -> None:
        self.page, self.where, self.check = page, where, page.check
        self.by_session = {c.session_id: c for c in page.chains}
        self.times_shown: Counter[tuple[int, int]] = Counter()
        self.heads_shown: set[int] = set()
        #: Rows of broken chains that show what cannot be checked (a head, counts, links after the break).
        self.unchecked: Counter[int] = Counter()

    def problem(self, where: str, what: str) -> None:
        self.check.problems.append(Problem(where, what))

    def row(self, row: shown.ShownRow) -> None:
        place = _place(self.where, row)
        if row.what == "unlinked":
            listed = shown.COMPLETE_LISTS.get(row.ref)
            this = f"this row of the {listed}" if listed else "this screenshot or filmstrip caption"
            self.problem(place, f"{this} shows no chained record (it was added, or its link removed)")
            return
        if row.what == "record" and row.ref == shown.UNCHAINED:
            self.check.unchained_rows += 1
            return
        session_text, _, seq_text = row.ref.partition(":")
        session_chain = self.by_session.get(int(session_text)) if session_text.isdigit() else None
        if session_chain is None:
            self.problem(place, f"names session {session_text!r}, which the page does not carry")
            return
        session_id = session_chain.session_id
        broken = session_id in self.page.broken
        if row.what == "head":
            self.heads_shown.add(session_id)
        if row.what != "record" and broken:
            self.unchecked[session_id] += 1
        elif row.what == "head":
            what = f"the head of session {session_id}"
            _compare(
                self.check,
                place,
                row,
                what,
                _head_values(session_chain),
                shown.HEAD_FIELDS,
                source="the chain",
            )
        elif row.what == "counts":
            what = f"the counts of session {session_id}"
            _compare(
                self.check, place, row, what, _counts(session_chain), shown.COUNT_FIELDS, source="the chain"
            )
        elif seq_text.isdigit() and (session_id, int(seq_text)) in self.page.verified:
            record = self.page.verified[(session_id, int(seq_text))]
            self.times_shown[(session_id, record.seq)] += 1
            _check_record_row(self.check, place, row, record)
        elif broken and seq_text.isdigit():
            self.unchecked[session_id] += 1  # at or after the break: nothing verified to compare with
        else:
            self.problem(place, f"names link {row.ref}, which session {session_id}'s chain lacks")

    def finish(self) -> None:
        for session_id, count in sorted(self.unchecked.items()):
            self.problem(
                self.where, f"{count} row(s) of session {session_id} cannot be checked: its chain is broken"
            )
        for session_chain in self.page.chains:
            session_id = session_chain.session_id
            if session_id not in self.heads_shown:
                self.problem(self.where, f"the page does not show the head of session {session_id}")
            if session_id in self.page.broken:
                continue
            for record in session_chain.records:
                complete = shown.COMPLETE_LISTS.get(record.kind)
                count = self.times_shown[(session_id, record.seq)]
                if complete and count != 1:
                    how = "is not shown" if count == 0 else f"is shown {count} times"
                    self.problem(
                        f"{self.where} ({complete} of session {session_id})",
                        f"{record.label} (link {record.seq}) {how} in the {complete}, which lists every one",
                    )


def _check_record_row(check: ExportCheck, place: str, row: shown.ShownRow, record: chain.ChainRecord) -> None:
    needed = shown.required(record.kind, row.classes, record.fields)
    values: dict[str, str] = {}
    for name in set(row.fields) | set(needed):
        value = shown.expected(record.kind, name, record.fields)
        if value is not None:
            values[name] = value
    what = f"{record.label} (link {record.seq})"
    unknown = sorted(set(row.fields) - set(values))
    if unknown:
        check.problems.append(Problem(place, f"{what} has no field {', '.join(unknown)} to show"))
    _compare(check, place, row, what, values, needed, kind=record.kind)
    if record.kind == "capture" and "shot" in row.classes and not record.fields.get("base_capture_id"):
        # A whole screen is shown byte for byte as stored (a tile update is put back together, so differs).
        for src in row.images:
            body = shown.image_bytes(src)
            if body is None or hashlib.sha256(body).hexdigest() != record.fields.get("sha256"):
                check.problems.append(
                    Problem(
                        place, f"{what}: the screenshot shown is not the chained image (its SHA-256 differs)"
                    )
                )


def _compare(
    check: ExportCheck,
    place: str,
    row: shown.ShownRow,
    what: str,
    values: dict[str, str],
    needed: tuple[str, ...] | list[str],
    kind: str = "",
    source: str = "the chained record",
) -> None:
    check.rows += 1
    for name in needed:
        if not row.fields.get(name):
            check.problems.append(
                Problem(place, f"{what}: its {shown.field_label(name)} {values.get(name, '')!r} is not shown")
            )
    for name, texts in row.fields.items():
        if name not in values:
            continue
        for text in texts:
            if shown.normalised(kind, name, text) != values[name]:
                check.problems.append(
                    Problem(
                        place,
                        f"{what}: {shown.field_label(name)} shown as {text!r}, "
                        f"{source} says {values[name]!r}",
                    )
                )


def _head_values(session_chain: chain.SessionChain) -> dict[str, str]:
    return {
        "head": session_chain.head or "(nothing recorded)",
        "length": str(session_chain.length),
        "genesis": session_chain.genesis,
    }


def _counts(session_chain: chain.SessionChain) -> dict[str, str]:
    kinds = Counter(record.kind for record in session_chain.records)
    frames = sum(1 for r in session_chain.records if r.kind == "capture" and r.fields.get("changed"))
    sites = [r.fields for r in session_chain.records if r.kind == "site_event"]
    blocked = sum(1 for f in sites if f.get("decision") == "blocked")
    sentinel = sum(1 for f in sites if f.get("source") == "sentinel")
    return {
        "frames": str(frames),
        "unchanged": str(kinds["capture"] - frames),
        "sites": f"{len(sites)} ({blocked} / {sentinel})",
        "device_events": str(kinds["device_event"]),
    }
