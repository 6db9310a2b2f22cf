"""Untrusted text made safe where it goes: alert messages, terminals and logs; and secrets kept out of all three.

Receivers render markup: Slack turns <!channel> and <@U123> into mentions,
Markdown renders *bold* and [links](...). A process can name itself anything
(prctl), so in alert messages every such character is replaced by its
full-width look-alike: readable to a person, meaningless to a renderer.
Terminals and logs get control characters escaped (printable); URLs with
tokens or passwords are redacted wherever they would be shown.
"""

from __future__ import annotations

import re

# Not `_`, `#`, `-`, `.`, `/`: they are in cgroup paths, pod and container names, which must stay searchable
# and pasteable into kubectl/systemctl. At worst they make italics or a heading; none forms a mention or a link.
_MARKUP = "<>&@*~`|[]!\\"
_INERT = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in _MARKUP})  # U+FF01.. full-width forms


def inert(text: str) -> str:
    """`text` with markup characters replaced and control characters dropped.

    >>> inert("<@channel> *x*")
    '＜＠channel＞ ＊x＊'
    """
    cleaned = "".join(ch for ch in text if ch.isprintable())
    return cleaned.translate(_INERT)


def printable(text: str) -> str:
    """`text` safe for a terminal or a log line: control characters (newline, escape, ...) shown escaped.

    A process can name itself "x\\nOOM KILL pid 1": printed raw, that forges a line.

    >>> printable("evil\\nOOM KILL\\x1b[31m")
    'evil\\\\nOOM KILL\\\\x1b[31m'
    """
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)


def redact(url: str) -> str:
    """The scheme and host of a URL, never its credentials or tokens."""
    scheme, found, rest = url.partition("://")
    scheme = scheme.rsplit(" ", 1)[-1]  # "alertmanager http://..." names its receiver first
    if not found or not scheme.replace("+", "").isalnum():
        return "(unparsable URL)"
    host = rest.split("?", 1)[0].split("/", 1)[0].rsplit("@", 1)[-1]
    if "." not in host and host != "localhost":  # slack://TokenA/..., discord://id/token: the "host" is a secret
        return f"{scheme}://…"
    return f"{scheme}://{host}/…"


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every secret URL replaced by its redacted form and any user:password@ removed."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, redact(secret))
    return _CREDENTIALS.sub(r"\1…@", text)
