"""Checking the hash chains an export carries, without the appliance's database: a rendered report page
(HTML, which embeds its chained records) or a whole-exam zip (every student's page, plus the manifest's
heads, which must match the records).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from hall_server.review.reports.render import chain_from_html
from hall_server.store import chain


def _chains_of_page(html: str, where: str) -> list[chain.SessionChain]:
    try:
        payload = chain_from_html(html)
        return [chain.SessionChain.from_json(session) for session in payload["sessions"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def verify_export(path: Path) -> chain.VerifyResult:
    """Recompute every chain in an exported report (``.html``) or exam export (``.zip``)."""
    if zipfile.is_zipfile(path):
        return _verify_zip(path)
    return chain.verify_chains(_chains_of_page(path.read_text(encoding="utf-8"), str(path)))


def _verify_zip(path: Path) -> chain.VerifyResult:
    with zipfile.ZipFile(path) as archive:
        try:
            manifest = json.loads(archive.read("manifest.json"))
        except KeyError:
            raise ValueError(f"{path} is not an Invigil exam export (no manifest.json)") from None
        chains: list[chain.SessionChain] = []
        extra: list[chain.Break] = []
        for number, entry in sorted(manifest.get("students", {}).items()):
            if not entry.get("enrolled"):
                continue
            name = f"students/{number}/report.html"
            page = _chains_of_page(archive.read(name).decode(), name)
            chains.extend(page)
            claimed = {head["session_id"]: head["head"] for head in entry.get("sessions", [])}
            for session_chain in page:
                if claimed.get(session_chain.session_id) != session_chain.head:
                    extra.append(
                        chain.Break(
                            session_chain.session_id,
                            session_chain.length,
                            "head",
                            f"of student {number}",
                            "the manifest's head differs from the report's",
                        )
                    )
    result = chain.verify_chains(chains)
    return chain.VerifyResult(result.sessions, result.records, result.breaks + extra)
