"""A minimal PDF writer for tests: text pages, a cross-reference table, and the standard security handler
(RC4, 40-bit) for encrypted cases. Enough for PDFium to read, written here so no test needs a PDF it
cannot make."""

from __future__ import annotations

import hashlib
import io

_PAD = bytes.fromhex("28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def _pdf_escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def _page_stream(lines: list[str]) -> bytes:
    ops = [b"BT /F1 11 Tf 14 TL 50 780 Td"]
    ops += [b"(" + _pdf_escape(line) + b") Tj T*" for line in lines]
    return b"\n".join([*ops, b"ET"])


def pdf(
    pages: list[list[str]],
    *,
    catalog_extra: str = "",
    page_extra: str = "",
    repeat_first_page: int = 0,
    owner_only_rc4: bool = False,
    user_password: bool = False,
) -> bytes:
    """A PDF of text pages. `repeat_first_page`: the page tree lists page one that many times (a page
    bomb). `owner_only_rc4`: encrypted (RC4 40-bit), empty user password, text extraction forbidden.
    `user_password`: an encryption dictionary whose user password is not empty (cannot be opened)."""
    objects: list[bytes] = []  # object n is objects[n - 1]
    font = 3
    page_numbers = [4 + 2 * i for i in range(len(pages))]
    first_page = page_numbers[0]
    kids = [first_page] * repeat_first_page if repeat_first_page else page_numbers
    objects.append(f"<< /Type /Catalog /Pages 2 0 R {catalog_extra}>>".encode())
    kid_refs = " ".join(f"{k} 0 R" for k in kids)
    objects.append(f"<< /Type /Pages /Kids [{kid_refs}] /Count {len(kids)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    streams: dict[int, bytes] = {}
    for number, lines in zip(page_numbers, pages, strict=True):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
            f" /Resources << /Font << /F1 {font} 0 R >> >>"
            f" /Contents {number + 1} 0 R {page_extra}>>".encode()
        )
        objects.append(b"")
        streams[number + 1] = _page_stream(lines)
    file_id = hashlib.md5(b"".join(streams.values())).digest()
    encrypt = b""
    key = b""
    if owner_only_rc4 or user_password:
        permissions = -64  # print, modify, copy (extract) and annotate denied
        owner_key = hashlib.md5(_PAD).digest()[:5]
        user_pad = _PAD if owner_only_rc4 else (b"secret" + _PAD)[:32]
        owner_entry = _rc4(owner_key, user_pad)
        key = hashlib.md5(
            user_pad + owner_entry + permissions.to_bytes(4, "little", signed=True) + file_id
        ).digest()[:5]
        user_entry = _rc4(key, _PAD)
        objects.append(
            f"<< /Filter /Standard /V 1 /R 2 /O <{owner_entry.hex()}> /U <{user_entry.hex()}>"
            f" /P {permissions} >>".encode()
        )
        encrypt = f" /Encrypt {len(objects)} 0 R".encode()
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for index, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{index} 0 obj\n".encode())
        if index in streams:
            data = streams[index]
            if key:
                object_key = hashlib.md5(key + index.to_bytes(3, "little") + b"\x00\x00").digest()[:10]
                data = _rc4(object_key, data)
            out.write(f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream")
        else:
            out.write(body)
        out.write(b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write(b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets))
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /ID [<{file_id.hex()}> <{file_id.hex()}>]".encode()
        + encrypt
        + f" >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()
