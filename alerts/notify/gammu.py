"""SMS with no internet: a GSM modem in the operations centre, driven by Gammu's SMS daemon (``gammu-smsd``).

The daemon's ``files`` backend is the interface (gammu-smsd-files(7)): a message to send is a
file ``OUT<priority>_<recipient>_<serial>.txt`` in its outbox (UTF-16 with a BOM when the
daemon's ``OutboxFormat`` is ``unicode``, as the configuration in docs/configuration.md
sets); the daemon moves it to its sent folder once the modem transmitted it, or to its
error folder. A message received is a file ``IN<date>_<time>_<serial>_<sender>_<part>.txt``
in its inbox. The file name is derived from the attempt, so an attempt sent again after a
crash finds its file and is never written twice.

A file is written under a dot-name and renamed into place: the daemon never reads half of it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from alerts.notify.base import Channel, Message, ProviderRejected, ProviderUnavailable, SendResult

_SAFE_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
_INBOX_NAME = re.compile(r"^IN(\d{8})_(\d{6})_(\d+)_(.+?)_(\d+)\.txt$")


@dataclass(frozen=True, slots=True)
class GammuFolders:
    outbox: Path
    sent: Path
    error: Path
    inbox: Path
    processed: Path  # inbound messages we have read (moved out of the daemon's inbox)

    @classmethod
    def under(cls, root: Path) -> GammuFolders:
        return cls(root / "outbox", root / "sent", root / "error", root / "inbox", root / "processed")

    def create(self) -> None:
        for folder in (self.outbox, self.sent, self.error, self.inbox, self.processed):
            folder.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class InboundSms:
    sender: str
    text: str
    file: str


class GammuSms:
    name = "gammu"
    channel = Channel.SMS

    def __init__(self, folders: GammuFolders) -> None:
        self.folders = folders
        folders.create()

    @staticmethod
    def file_name(address: str, attempt_key: str) -> str:
        serial = re.sub(r"[^0-9A-Za-z]", "", attempt_key)[-40:]
        return f"OUTA_{address}_{serial}.txt"

    def send(self, message: Message) -> SendResult:
        if not _SAFE_NUMBER.match(message.address):
            raise ProviderRejected(f"not a phone number: {message.address!r}", channel=self.channel, provider=self.name)
        name = self.file_name(message.address, message.attempt_key)
        if self.state(name) is not None:  # written before a crash: never twice
            return SendResult(self.name, name)
        tmp = self.folders.outbox / f".{name}.part"
        try:
            tmp.write_bytes(f"{message.subject} {message.text}".encode("utf-16"))  # BOM + UTF-16, OutboxFormat=unicode
            os.replace(tmp, self.folders.outbox / name)
        except OSError as exc:
            raise ProviderUnavailable(f"cannot write the daemon's outbox: {exc}", channel=self.channel,
                                      provider=self.name) from None
        return SendResult(self.name, name)

    def state(self, name: str) -> str | None:
        """Where the daemon has a message: "queued" (outbox), "sent", "error", or None (nowhere)."""
        for state, folder in (("queued", self.folders.outbox), ("sent", self.folders.sent), ("error", self.folders.error)):
            if (folder / name).exists():
                return state
        return None

    def received(self) -> list[InboundSms]:
        """Messages the daemon put in its inbox, oldest first (not yet taken)."""
        out = []
        for path in sorted(self.folders.inbox.glob("IN*.txt")):
            m = _INBOX_NAME.match(path.name)
            if m is None:
                continue
            raw = path.read_bytes()
            text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8", "replace")
            out.append(InboundSms(m.group(4), text.strip(), path.name))
        return out

    def take(self, inbound: InboundSms) -> None:
        """Done with an inbound message: moved to the processed folder, kept for the record."""
        os.replace(self.folders.inbox / inbound.file, self.folders.processed / inbound.file)

    def close(self) -> None:
        pass


def smsd_config(folders: GammuFolders, dummy_device: Path | None, *, device: str = "/dev/ttyUSB0",
                connection: str = "at", log_file: Path | None = None) -> str:
    """A gammu-smsdrc for the files backend (with Gammu's dummy phone when ``dummy_device`` is given)."""
    phone = (f"device = {dummy_device}/\nmodel = dummy\nconnection = none\n" if dummy_device
             else f"device = {device}\nconnection = {connection}\n")
    return (f"[gammu]\n{phone}\n[smsd]\nservice = files\n"
            f"inboxpath = {folders.inbox}/\noutboxpath = {folders.outbox}/\nsentsmspath = {folders.sent}/\n"
            f"errorsmspath = {folders.error}/\ninboxformat = unicode\noutboxformat = unicode\ntransmitformat = auto\n"
            "commtimeout = 1\nsendtimeout = 10\nreceivefrequency = 1\nstatusfrequency = 0\nloopsleep = 1\n"
            "checksecurity = 0\ncheckbattery = 0\ncheckSignal = 0\ncheckNetwork = 0\n"
            + (f"logfile = {log_file}\ndebuglevel = 1\n" if log_file else ""))
