"""HTML documents to PDF (service vouchers, the published quality report) with WeasyPrint.

WeasyPrint lays text out with Debian's pango (``scripts/setup`` installs it);
without either, PDF output fails with a clear message and HTML still works.
"""

from __future__ import annotations


class PdfUnavailable(RuntimeError):
    """WeasyPrint or the system libraries it needs are missing."""


def available() -> bool:
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def from_html(html: str) -> bytes:
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:
        raise PdfUnavailable(f"PDF output needs WeasyPrint and pango: {exc}") from None
    pdf: bytes = HTML(string=html).write_pdf()
    return pdf
