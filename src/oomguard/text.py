"""Untrusted text made safe where it goes: alert messages, terminals and logs; and secrets kept out of all three.

Receivers render markup: Slack turns <!channel> into a mention, Markdown
renders *bold* and [links](...), Discord pings @everyone. A process, pod or
cgroup can be named almost anything, so every name in an alert is marked
untrusted when the message is built (`untrusted`) and rendered per receiver
format: as is for plain text (apprise itself escapes it for Slack, whose
mrkdwn is off for text, and HTML-escapes it for email), as a code span for
Markdown receivers, where nothing renders. Either way it arrives byte for
byte copyable: no look-alike characters.
Terminals and logs get control characters escaped (printable); URLs with
tokens or passwords are redacted wherever they would be shown.

Names come from the kernel as bytes any user can choose (a 15-byte comm cut
inside a multi-byte character, a cgroup directory named with 0xff): they are
read as bytes and decoded once, at the edge (`from_kernel`, `read_kernel_text`),
with surrogateescape, so nothing is lost and nothing raises; `printable` shows
each undecodable byte as \\xNN.
"""

from __future__ import annotations

import re
from pathlib import Path

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use marks around untrusted text, never sent anywhere
_MARK = re.compile(f"{_OPEN}(.*?){_CLOSE}", re.S)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~|<>\[\]])")


def untrusted(text: str) -> str:
    r"""`text` (a name from the system) marked for per-format rendering, control characters shown escaped.

    >>> plain(untrusted("x\nOOM KILL"))
    'x\\nOOM KILL'
    """
    cleaned = printable(text).replace(_OPEN, "").replace(_CLOSE, "")
    return f"{_OPEN}{cleaned}{_CLOSE}"


def plain(text: str) -> str:
    """Marked text as plain text: every name as it is.

    >>> plain("cgroup: " + untrusted("/kubepods/my_pod*<!channel>"))
    'cgroup: /kubepods/my_pod*<!channel>'
    """
    return text.replace(_OPEN, "").replace(_CLOSE, "")


def markdown(text: str) -> str:
    r"""Marked text as Markdown: names as code spans (nothing inside renders or mentions), our own words with
    Markdown's special characters escaped.

    >>> markdown("usage *now*: " + untrusted("a`b @here"))
    'usage \\*now\\*: ``a`b @here``'
    """
    out, at = [], 0
    for match in _MARK.finditer(text):
        out.append(_MARKDOWN_SPECIAL.sub(r"\\\1", text[at:match.start()]))
        out.append(code_span(match.group(1)))
        at = match.end()
    out.append(_MARKDOWN_SPECIAL.sub(r"\\\1", text[at:]))
    return "".join(out)


def code_span(text: str) -> str:
    """A CommonMark code span holding `text` exactly: a fence longer than any backtick run inside, padded
    with a space when `text` starts or ends with a backtick (the renderer strips one space each side).

    >>> code_span("a``b")
    '```a``b```'
    >>> code_span("`x")
    '`` `x ``'
    """
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" or (text[0] == " " and text[-1] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def from_kernel(data: bytes) -> str:
    r"""Bytes from /proc, cgroupfs or the kernel's log as text, losslessly: undecodable bytes become lone
    surrogates (surrogateescape), which `printable` shows as \xNN and `os.fsencode` turns back into the bytes.

    >>> printable(from_kernel(b"x\xe2\x82"))
    'x\\xe2\\x82'
    """
    return data.decode("utf-8", "surrogateescape")


def read_kernel_text(path: Path | str) -> str:
    """A file the kernel serves, as text decoded by `from_kernel`: never newline translation (a CR stays a
    CR), never a UnicodeDecodeError. OSError propagates (the process or cgroup is gone)."""
    with open(path, "rb") as stream:
        return from_kernel(stream.read())


_UNDECODED = re.compile("[\udc80-\udcff]")


def utf8(text: str) -> str:
    r"""`text` with each byte `from_kernel` could not decode shown as \xNN, all else as is: a value any UTF-8
    encoder takes (a Prometheus or Alertmanager label), still telling the bytes apart.

    >>> utf8("a\udcffb\n")
    'a\\xffb\n'
    """
    return _UNDECODED.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


def _escaped(ch: str) -> str:
    if _UNDECODED.match(ch):
        return utf8(ch)
    return ch.encode("unicode_escape").decode("ascii")


def printable(text: str) -> str:
    """`text` safe for a terminal, a log line or any UTF-8 encoder: control characters (newline, escape, ...)
    and undecodable bytes shown escaped.

    A process can name itself "x\\nOOM KILL pid 1": printed raw, that forges a line.

    >>> printable("evil\\nOOM KILL\\x1b[31m")
    'evil\\\\nOOM KILL\\\\x1b[31m'
    >>> printable("cr\\r\\udcff")
    'cr\\\\r\\\\xff'
    """
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


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
