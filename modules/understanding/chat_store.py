"""Chats of the Understand tab kept in the data dir: ``<data>/understanding/chats/<id>.json`` with the
messages, and each image shown in the chat as ``<id>-<n>.png`` beside it (the JSON names the file, so a chat
is reopened, images included, after a restart). Files are written atomically (a temporary file, then a
rename); a chat id is 12 hex digits, so no id can name a path outside the folder.

:func:`request_messages` turns a stored chat into the OpenAI-style messages of an ``understand_chat``
request (images as data URIs), so earlier images stay in the model's context.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from modules.atomic_files import write_bytes_atomic

if TYPE_CHECKING:
    from PIL import Image

_ID = re.compile(r"^[0-9a-f]{12}$")
_IMAGE_NAME = re.compile(r"^[0-9a-f]{12}-\d{1,4}\.png$")
TITLE_CHARS = 60


class ChatNotFound(LookupError):
    """No chat of that id (or the id is not one the store makes)."""


@dataclass
class StoredMessage:
    role: str
    text: str = ""
    images: list[str] = field(default_factory=list)  # PNG file names beside the chat's JSON


@dataclass
class Chat:
    id: str
    title: str = ""
    model: str = ""
    created: float = 0.0
    updated: float = 0.0
    messages: list[StoredMessage] = field(default_factory=list)

    def as_pairs(self) -> list[tuple[str, str]]:
        """(role, text) per message, for a chat view (images named as ``[image]``)."""
        return [(m.role, ("[image] " * len(m.images)) + m.text) for m in self.messages]


@dataclass(frozen=True)
class ChatListing:
    id: str
    title: str
    updated: float
    messages: int


class ChatStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "understanding" / "chats"

    def _path(self, chat_id: str) -> Path:
        if not isinstance(chat_id, str) or not _ID.match(chat_id):
            raise ChatNotFound(f"no chat {chat_id!r}")
        return self.root / f"{chat_id}.json"

    def new(self, model: str = "") -> Chat:
        now = time.time()
        return Chat(id=secrets.token_hex(6), model=model, created=now, updated=now)

    def add_message(self, chat: Chat, role: str, text: str, images: Iterable["Image.Image"] = ()) -> StoredMessage:
        """Append a message to ``chat``; its images are saved as PNG beside the chat now (call :meth:`save`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._path(chat.id)
        names = []
        count = sum(len(m.images) for m in chat.messages)
        for image in images:
            count += 1
            name = f"{chat.id}-{count}.png"
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
            write_bytes_atomic(self.root / name, buffer.getvalue())
            names.append(name)
        message = StoredMessage(role=role, text=text, images=names)
        chat.messages.append(message)
        if not chat.title and role == "user" and text.strip():
            chat.title = " ".join(text.split())[:TITLE_CHARS]
        return message

    def pop_message(self, chat: Chat) -> None:
        """Take back the last message (one whose answer failed) and its saved images."""
        if chat.messages:
            for name in chat.messages.pop().images:
                (self.root / name).unlink(missing_ok=True)

    def save(self, chat: Chat) -> None:
        path = self._path(chat.id)
        self.root.mkdir(parents=True, exist_ok=True)
        chat.updated = time.time()
        write_bytes_atomic(path, json.dumps(asdict(chat), ensure_ascii=False, indent=1).encode("utf-8"))

    def load(self, chat_id: str) -> Chat:
        path = self._path(chat_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            messages = [StoredMessage(role=str(m["role"]), text=str(m.get("text", "")),
                                      images=[str(n) for n in m.get("images", []) if _IMAGE_NAME.match(str(n))])
                        for m in data.get("messages", [])]
            return Chat(id=chat_id, title=str(data.get("title", "")), model=str(data.get("model", "")),
                        created=float(data.get("created", 0)), updated=float(data.get("updated", 0)),
                        messages=messages)
        except FileNotFoundError:
            raise ChatNotFound(f"no chat {chat_id!r}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ChatNotFound(f"chat {chat_id!r} cannot be read ({type(exc).__name__})") from None

    def list(self) -> list[ChatListing]:
        """The stored chats, the most recently updated first (unreadable files left out)."""
        found = []
        if not self.root.is_dir():
            return found
        for path in self.root.glob("*.json"):
            if not _ID.match(path.stem):
                continue
            try:
                chat = self.load(path.stem)
            except ChatNotFound:
                continue
            found.append(ChatListing(chat.id, chat.title or "(untitled)", chat.updated, len(chat.messages)))
        return sorted(found, key=lambda c: c.updated, reverse=True)

    def delete(self, chat_id: str) -> None:
        chat = self.load(chat_id)
        for message in chat.messages:
            for name in message.images:
                (self.root / name).unlink(missing_ok=True)
        self._path(chat_id).unlink(missing_ok=True)

    def image(self, name: str) -> Path:
        if not _IMAGE_NAME.match(name):
            raise ChatNotFound(f"no chat image {name!r}")
        return self.root / name

    def request_messages(self, chat: Chat) -> list[dict[str, Any]]:
        """The chat as OpenAI-style messages (text and data-URI image parts) for an ``understand_chat`` request."""
        out: list[dict[str, Any]] = []
        for message in chat.messages:
            if not message.images:
                out.append({"role": message.role, "content": message.text})
                continue
            parts: list[dict[str, Any]] = []
            for name in message.images:
                data = base64.b64encode(self.image(name).read_bytes()).decode()
                parts.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}})
            if message.text:
                parts.append({"type": "text", "text": message.text})
            out.append({"role": message.role, "content": parts})
        return out
