"""Host-name and IP-literal canonicalisation for the network policy (pure, stdlib only).

Two spellings of one host must give one string, or a rule can be walked around: ``EXAM.example.nl.``,
``exam.example.nl`` and ``exam。example.nl`` are the same site, and so are ``127.0.0.1``, ``2130706433``,
``0x7f.1``, ``017700000001`` and ``[::ffff:127.0.0.1]``. ``normalize_host`` is the one place that decides.

IDNA choice: the standard library codec (``encodings.idna``, IDNA2003 nameprep) converts non-ASCII labels
to ``xn--`` form. Browsers use UTS #46 (IDNA2008 based); the two disagree only on the "deviation"
characters ß, ς, ZWJ and ZWNJ, so labels holding those are rejected and must be written in ``xn--`` form.
"""

from __future__ import annotations

import ipaddress
import re
from encodings import idna as _idna

MAX_HOST_CHARS = 253
MAX_LABEL_CHARS = 63

#: Characters a label may hold after IDNA conversion. ``_`` appears in real names (CDNs, SRV-style labels).
_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$")
#: IDNA treats these as label separators, as browsers do.
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
#: Where IDNA2003 (stdlib) and UTS #46 (browsers) map differently: refuse rather than guess.
_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")
_HEX_PART_RE = re.compile(r"^0[xX][0-9a-fA-F]*$")


def normalize_host(host: str) -> str:
    """Return the canonical form of ``host``: a lower-case ASCII name, a dotted IPv4 or a compressed IPv6.

    Rule hosts and every host decided (CONNECT targets, SNI names, DNS queries) go through it, so that both
    sides of a match are in the same form. IPv6 comes back without brackets or zone id; IPv4-mapped IPv6 comes
    back as IPv4. Raises ``ValueError`` naming the problem for anything that is not a usable host; the result
    is a fixed point.
    """
    if not isinstance(host, str):
        raise ValueError("host must be text")
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        return _normalize_ipv6(text[1:-1])
    if text.count(":") >= 2:
        return _normalize_ipv6(text)
    text = text.translate(_IDNA_DOTS)
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise ValueError("empty host name")
    # Map to ASCII first, as browsers do: full-width digits are a number only after NFKC.
    labels = [_to_ascii_label(label) for label in text.split(".")]
    if _ends_in_number(labels[-1]):
        return _parse_ipv4(labels)
    name = ".".join(labels)
    if len(name) > MAX_HOST_CHARS:
        raise ValueError(f"host name is {len(name)} characters long; the limit is {MAX_HOST_CHARS}")
    return name


def is_ip(host: str) -> bool:
    """Whether a host already returned by ``normalize_host`` is an IP literal."""
    return ":" in host or _ends_in_number(host.rsplit(".", 1)[-1])


def _to_ascii_label(label: str) -> str:
    if not label:
        raise ValueError("empty label (two dots in a row, or a leading dot)")
    if label.isascii():
        ascii_label = label.lower()
    else:
        bad = sorted(_DEVIATIONS.intersection(label))
        if bad:
            raise ValueError(
                f"label {label!r} contains {', '.join(map(repr, bad))}, which browsers and IDNA2003 "
                "map differently; write the label in its xn-- (punycode) form"
            )
        try:
            ascii_label = _idna.ToASCII(label).decode("ascii").lower()
        except UnicodeError as exc:
            raise ValueError(f"label {label!r} is not a valid internationalised name: {exc}") from None
    if len(ascii_label) > MAX_LABEL_CHARS:
        raise ValueError(f"label {ascii_label[:20]!r}... is longer than {MAX_LABEL_CHARS} characters")
    if not _LABEL_RE.fullmatch(ascii_label):
        raise ValueError(
            f"label {ascii_label!r} may hold only letters, digits, '-' and '_', and may not start or "
            "end with '-'"
        )
    if ascii_label.startswith("xn--"):
        try:
            ascii_label[4:].encode("ascii").decode("punycode")
        except UnicodeError:
            raise ValueError(f"label {ascii_label!r} is not valid punycode") from None
    return ascii_label


def _ends_in_number(label: str) -> bool:
    """WHATWG "ends in a number": a last label of digits or 0x-hex makes the whole host an IPv4 attempt."""
    return (label.isascii() and label.isdigit()) or bool(_HEX_PART_RE.fullmatch(label))


def _parse_ipv4(parts: list[str]) -> str:
    """Parse an IPv4 address as ``inet_aton`` and browsers do: 1-4 parts, each decimal, 0-octal or 0x-hex."""
    if len(parts) > 4:
        raise ValueError(f"{'.'.join(parts)!r} looks like an IPv4 address but has more than 4 parts")
    numbers = [_parse_ipv4_part(part, ".".join(parts)) for part in parts]
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{'.'.join(parts)!r} is an IPv4 address out of range")
    value = last
    for index, number in enumerate(head):
        value += number << (8 * (3 - index))
    return str(ipaddress.IPv4Address(value))


def _parse_ipv4_part(part: str, whole: str) -> int:
    if not part:
        raise ValueError(f"{whole!r} looks like an IPv4 address but has an empty part")
    try:
        if _HEX_PART_RE.fullmatch(part):
            return int(part[2:] or "0", 16)
        if part.isascii() and part.isdigit():
            return int(part, 8) if len(part) > 1 and part.startswith("0") else int(part)
    except ValueError:
        pass  # e.g. "08": not octal
    raise ValueError(f"{whole!r} looks like an IPv4 address but {part!r} is not a number")


def _normalize_ipv6(text: str) -> str:
    address, _, _zone = text.partition("%")  # a zone id picks an interface, not another host
    if not address:
        raise ValueError("empty IPv6 address")
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IPv6 address") from None
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else ip.compressed
