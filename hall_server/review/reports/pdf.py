"""The report as a PDF, through WeasyPrint (needs pango from the OS: Debian ``libpango-1.0-0`` and
``libpangoft2-1.0-0``). Imported lazily so the rest of the server starts without it.
"""

from __future__ import annotations


def html_to_pdf(html: str) -> bytes:
    """Render a self-contained report page to PDF bytes. Only data: URIs are fetched: a report never
    reaches the network or the file system for a resource."""
    from weasyprint import HTML  # heavy import: only where a PDF is made
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols=("data",), fail_on_errors=True)
    pdf = HTML(string=html, url_fetcher=fetcher).write_pdf()
    assert pdf is not None
    return bytes(pdf)
