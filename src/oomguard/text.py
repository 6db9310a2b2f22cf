"""Making untrusted text (process names, cgroup paths, pod names) inert in alert messages.

Receivers render markup: Slack turns <!channel> and <@U123> into mentions,
Markdown renders *bold* and [links](...). A process can name itself anything
(prctl), so every such character is replaced by its full-width look-alike:
readable to a person, meaningless to a renderer.
"""

_MARKUP = "<>&@*_~`|[]#!\\"
_INERT = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in _MARKUP})  # U+FF01.. full-width forms


def inert(text: str) -> str:
    """`text` with markup characters replaced and control characters dropped.

    >>> inert("<@channel> *x*")
    '＜＠channel＞ ＊x＊'
    """
    cleaned = "".join(ch for ch in text if ch.isprintable())
    return cleaned.translate(_INERT)
