"""Streaming, hardened XML parsing of one part of a ZIP container.

The parser never resolves entities, never loads a DTD, never touches the network and keeps
libxml2's default size limits (no `huge_tree`). A part that declares a DTD is refused outright:
OOXML and ODF forbid DTDs, so one is a sign of an entity-expansion attack (billion laughs).
Elements are streamed (`iterparse`) and released as they are consumed, so memory stays flat
even for a large part.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator

from lxml import etree

from ingest.errors import UnreadableDocument

from .safezip import BoundedReader


def iter_part(
    archive: zipfile.ZipFile, name: str, max_bytes: int, tags: tuple[str, ...], label: str
) -> Iterator[etree._Element]:
    """Each element with one of `tags`, once it is complete (document order of end tags)."""
    what = f"{name} in the {label}"
    try:
        with archive.open(name) as raw:
            events = etree.iterparse(
                BoundedReader(raw, max_bytes, what),
                events=("start", "end"),
                tag=tags,
                resolve_entities=False,
                load_dtd=False,
                no_network=True,
                huge_tree=False,
                remove_comments=True,
                remove_pis=True,
            )
            checked = False
            for event, element in events:
                if not checked:
                    if element.getroottree().docinfo.internalDTD is not None:
                        raise UnreadableDocument(
                            f"{what} declares a DTD, which this format never has; refusing a likely "
                            "XML entity attack"
                        )
                    checked = True
                if event == "end":
                    yield element
    except etree.XMLSyntaxError as err:
        raise UnreadableDocument(f"{what} is not well-formed XML ({err.msg})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as err:
        raise UnreadableDocument(f"{what} cannot be inflated ({err})") from None


def release(element: etree._Element) -> None:
    """Free a consumed element and the already-consumed siblings before it."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def has_ancestor(element: etree._Element, *tags: str) -> bool:
    return next(element.iterancestors(*tags), None) is not None


def nearest(element: etree._Element, tag: str) -> etree._Element | None:
    return next(element.iterancestors(tag), None)
