"""Delivery through apprise that loses nothing: an on-disk spool per receiver and a sender thread each.

put() writes the message into every receiver's spool directory (one small
file each, written atomically) and returns: the sampling loop never waits
on the network. Each receiver's thread sends its oldest file first and
removes it only once apprise reports success, so a receiver that is down
gets everything, in order, when it comes back, and a restart resumes the
spool. Failures back off exponentially (1 s doubling to 60 s).
Exactly once per receiver, except for the one message in flight if the
daemon dies between the receiver's acceptance and the file's removal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apprise

from .alertmanager import send_to_alertmanager
from .messages import Message

log = logging.getLogger("oomguard")
Sender = Callable[[dict[str, Any]], bool]  # takes a Message as a dict; True once the receiver has it
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 60.0


def send_with_apprise(url: str, title: str, body: str) -> bool:
    """One notification to one apprise URL, as plain text; True if the receiver took it."""
    notifier = apprise.Apprise()
    if not notifier.add(url):
        log.error("alert URL not understood by apprise (check its scheme): %s", redact(url))
        return False
    return bool(notifier.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))


def redact(url: str) -> str:
    """The scheme and host of a URL, never its credentials or tokens."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.rsplit(" ", 1)[-1]  # "alertmanager http://..." names its receiver first
    host = rest.split("?", 1)[0].split("/", 1)[0].rsplit("@", 1)[-1]
    if "." not in host and host != "localhost":  # slack://TokenA/..., discord://id/token: the "host" is a secret
        return f"{scheme}://…"
    return f"{scheme}://{host}/…"


def receiver_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def apprise_sender(url: str) -> Sender:
    return lambda message: send_with_apprise(url, message["title"], message["body"])


def receivers_for(apprise_urls: tuple[str, ...], alertmanager_url: str = "") -> dict[str, Sender]:
    """Receiver name -> sender: one per apprise URL, and Alertmanager's v2 API when configured."""
    receivers = {url: apprise_sender(url) for url in apprise_urls}
    if alertmanager_url:
        receivers[f"alertmanager {alertmanager_url}"] = lambda m: send_to_alertmanager(alertmanager_url, m)
    return receivers


class Outbox:
    def __init__(self, directory: Path, receivers: dict[str, Sender],
                 backoff_first_s: float = BACKOFF_FIRST_S, backoff_max_s: float = BACKOFF_MAX_S):
        self.directory, self.receivers = directory, receivers
        self.urls = tuple(receivers)
        self.backoff_first_s, self.backoff_max_s = backoff_first_s, backoff_max_s
        self._stop = threading.Event()
        self._wake = {url: threading.Event() for url in self.urls}
        self._threads: list[threading.Thread] = []
        for url in self.urls:
            self._spool(url).mkdir(parents=True, exist_ok=True, mode=0o700)
        existing = [int(p.stem) for url in self.urls for p in self._spool(url).glob("*.json") if p.stem.isdigit()]
        self._sequence = max(existing, default=0)  # continues after a restart, so order holds
        self._lock = threading.Lock()

    def _spool(self, url: str) -> Path:
        return self.directory / receiver_key(url)

    def start(self) -> None:
        for url in self.urls:
            thread = threading.Thread(target=self._run, args=(url,), name=f"alerts {redact(url)}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def put(self, message: Message) -> None:
        with self._lock:
            self._sequence += 1
            name = f"{self._sequence:016d}.json"
        data = json.dumps(asdict(message))
        for url in self.urls:
            spool = self._spool(url)
            temporary = spool / f".{name}.tmp"
            temporary.write_text(data)
            os.replace(temporary, spool / name)
            self._wake[url].set()

    def pending(self) -> int:
        """Messages not yet delivered, summed over receivers."""
        return sum(len(list(self._spool(url).glob("*.json"))) for url in self.urls)

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout_s / max(len(self._threads), 1))

    def _run(self, url: str) -> None:
        spool, wake = self._spool(url), self._wake[url]
        backoff = self.backoff_first_s
        while not self._stop.is_set():
            files = sorted(spool.glob("*.json"))
            if not files:
                wake.wait(1.0)
                wake.clear()
                continue
            message = json.loads(files[0].read_text())
            try:
                delivered = self.receivers[url](message)
            except Exception:  # a plugin bug must not kill the sender
                log.exception("sending to %s failed", redact(url))
                delivered = False
            if delivered:
                files[0].unlink()
                backoff = self.backoff_first_s
            else:
                log.warning("alert %s to %s not delivered; retrying in %.0fs (%d waiting)",
                            message["alert_id"], redact(url), backoff, len(files))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
