"""The document types we accept, by short name, and how to name them in messages."""

from __future__ import annotations

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"

MEDIA_TYPES: dict[str, str] = {
    "pdf": PDF,
    "docx": DOCX,
    "odt": ODT,
    "html": HTML,
    "md": MARKDOWN,
    "txt": TEXT,
}

# For messages such as "... not a supported document (pdf, docx, odt, html, md, txt)".
SUPPORTED = ", ".join(MEDIA_TYPES)

LABELS: dict[str, str] = {
    PDF: "PDF",
    DOCX: "Word document",
    ODT: "OpenDocument text",
    HTML: "HTML page",
    MARKDOWN: "Markdown file",
    TEXT: "text file",
}
