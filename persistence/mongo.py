"""The chat message store on MongoDB through pymongo's AsyncMongoClient.

Every MongoDB call of the project is in this module. MongoDB has no
multi-document transaction outside replica sets, so ``seq`` and idempotency
are built from single-document atomic operations:

* ``chat_counters``: one document per room; ``find_one_and_update`` with
  ``$inc`` hands out the next ``seq`` atomically (several processes included).
* ``chat_claims``: a send first claims its ``(room, sender, client_msg_id)``
  by inserting it as an ``_id``. Exactly one of several concurrent retries wins;
  the others wait for the winner's message instead of taking a ``seq`` that
  their duplicate insert would then waste (a gap). The claim records the
  ``seq`` it got, so a retry after a crash between the ``$inc`` and the
  insert fills that ``seq`` instead of leaving a hole. It is deleted once
  the message is stored.
* ``chat_messages``: unique on ``(room_id, seq)`` and on
  ``(room_id, sender_id, client_msg_id)``, created at start-up.

Times are stored as integer milliseconds since the epoch (the wire precision).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from persistence.chat import ChatMessage, MessageStore, RoomSummary

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "giftcall"
#: How long a send waits for a concurrent send of the same message to finish
#: before it decides the other one died and takes over its claim.
CLAIM_PATIENCE_S = 5.0
_POLL_S = 0.02


class MongoStoreError(RuntimeError):
    """The MongoDB message store could not do what was asked."""


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _message(doc: dict[str, Any]) -> ChatMessage:
    return ChatMessage(
        room_id=int(doc["room_id"]),
        seq=int(doc["seq"]),
        sender_id=str(doc["sender_id"]),
        content=str(doc["content"]),
        client_msg_id=str(doc["client_msg_id"]),
        created_at=_from_ms(int(doc["created_ms"])),
    )


def _key(*parts: object) -> str:
    """An unambiguous string ``_id`` (user ids may contain any character)."""
    return orjson.dumps(parts).decode()


class MongoMessageStore(MessageStore):
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        db = client[database]
        self._messages = db["chat_messages"]
        self._counters = db["chat_counters"]
        self._claims = db["chat_claims"]
        self._reads = db["chat_reads"]

    @classmethod
    async def open(cls, url: str) -> MongoMessageStore:
        """Connect to ``url`` (the database is the URL's path, default
        ``giftcall``) and create the indexes."""
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000
        )
        try:
            database = client.get_default_database(default=DEFAULT_DATABASE).name
            store = cls(client, database)
            await store.create_indexes()
        except PyMongoError as exc:
            await client.close()
            raise MongoStoreError(f"MongoDB message store unavailable: {exc}") from None
        except BaseException:
            await client.close()
            raise
        logger.info(
            "mongo message store ready",
            extra={"event": "mongo.ready", "database": database},
        )
        return store

    async def create_indexes(self) -> None:
        await self._messages.create_index(
            [("room_id", ASCENDING), ("seq", ASCENDING)], unique=True, name="room_seq"
        )
        await self._messages.create_index(
            [("room_id", ASCENDING), ("sender_id", ASCENDING), ("client_msg_id", ASCENDING)],
            unique=True,
            name="room_sender_client_msg",
        )

    async def ping(self) -> None:
        await self._client.admin.command("ping")

    async def close(self) -> None:
        await self._client.close()

    # ------------------------------------------------------------------ send

    async def _find(self, room_id: int, sender_id: str, client_msg_id: str) -> ChatMessage | None:
        doc = await self._messages.find_one(
            {"room_id": room_id, "sender_id": sender_id, "client_msg_id": client_msg_id}
        )
        return _message(doc) if doc else None

    async def _claim(self, key: str, token: str) -> bool:
        """Insert the claim of a message; ``False`` if somebody else holds it."""
        try:
            await self._claims.insert_one(
                {"_id": key, "owner": token, "at_ms": _ms(datetime.now(UTC))}
            )
        except DuplicateKeyError:
            return False
        return True

    async def append(
        self, room_id: int, sender_id: str, content: str, client_msg_id: str
    ) -> tuple[ChatMessage, bool]:
        key = _key(room_id, sender_id, client_msg_id)
        token = uuid.uuid4().hex
        deadline = time.monotonic() + 2 * CLAIM_PATIENCE_S
        owned = await self._claim(key, token)
        while not owned:
            existing = await self._find(room_id, sender_id, client_msg_id)
            if existing is not None:
                return existing, False
            claim = await self._claims.find_one({"_id": key})
            if claim is None:  # finished and cleaned up meanwhile, or never was
                owned = await self._claim(key, token)
                continue
            stale = _ms(datetime.now(UTC)) - int(claim["at_ms"]) > CLAIM_PATIENCE_S * 1000
            if stale and "seq" in claim:
                # The claimer took a seq and vanished: store the message there.
                return await self._insert(
                    key,
                    room_id,
                    seq=int(claim["seq"]),
                    sender_id=sender_id,
                    content=content,
                    client_msg_id=client_msg_id,
                )
            if stale:
                taken = await self._claims.find_one_and_update(
                    {"_id": key, "owner": claim["owner"]},
                    {"$set": {"owner": token, "at_ms": _ms(datetime.now(UTC))}},
                )
                owned = taken is not None
                continue
            if time.monotonic() > deadline:
                raise MongoStoreError(f"room {room_id}: message {client_msg_id!r} stuck")
            await asyncio.sleep(_POLL_S)

        # The claim is ours. A message may still exist: its sender deletes the
        # claim only after the insert, so this read cannot miss it.
        existing = await self._find(room_id, sender_id, client_msg_id)
        if existing is not None:
            await self._claims.delete_one({"_id": key, "owner": token})
            return existing, False
        counter = await self._counters.find_one_and_update(
            {"_id": room_id},
            {"$inc": {"seq": 1}, "$set": {"last_ms": _ms(datetime.now(UTC))}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if counter is None:  # an upsert with AFTER always returns the document
            raise MongoStoreError(f"room {room_id}: counter missing after upsert")
        seq = int(counter["seq"])
        await self._claims.update_one({"_id": key, "owner": token}, {"$set": {"seq": seq}})
        return await self._insert(
            key, room_id, seq=seq, sender_id=sender_id, content=content, client_msg_id=client_msg_id
        )

    async def _insert(
        self, key: str, room_id: int, *, seq: int, sender_id: str, content: str, client_msg_id: str
    ) -> tuple[ChatMessage, bool]:
        now = datetime.now(UTC)
        doc = {
            "room_id": room_id,
            "seq": seq,
            "sender_id": sender_id,
            "client_msg_id": client_msg_id,
            "content": content,
            "created_ms": _ms(now),
        }
        try:
            await self._messages.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._find(room_id, sender_id, client_msg_id)
            if existing is None:
                raise MongoStoreError(f"room {room_id}: seq {seq} taken twice") from None
            return existing, False
        finally:
            await self._claims.delete_one({"_id": key})
        return _message(doc), True

    # ----------------------------------------------------------------- reads

    async def after(self, room_id: int, after_seq: int, limit: int) -> list[ChatMessage]:
        cursor = (
            self._messages.find({"room_id": room_id, "seq": {"$gt": after_seq}})
            .sort("seq", ASCENDING)
            .limit(limit)
        )
        return [_message(doc) async for doc in cursor]

    async def before(self, room_id: int, before_seq: int | None, limit: int) -> list[ChatMessage]:
        query: dict[str, Any] = {"room_id": room_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        cursor = self._messages.find(query).sort("seq", DESCENDING).limit(limit)
        return [_message(doc) async for doc in cursor]

    async def last_seq(self, room_id: int) -> int:
        counter = await self._counters.find_one({"_id": room_id})
        return int(counter["seq"]) if counter else 0

    async def mark_read(self, room_id: int, user_id: str, seq: int) -> int:
        target = min(seq, await self.last_seq(room_id))
        key = _key(room_id, user_id)
        try:
            await self._reads.update_one({"_id": key}, {"$max": {"seq": target}}, upsert=True)
        except DuplicateKeyError:  # two first markers at once: apply ours again
            await self._reads.update_one({"_id": key}, {"$max": {"seq": target}})
        marker = await self._reads.find_one({"_id": key})
        return int(marker["seq"]) if marker else target

    async def summaries(self, user_id: str, room_ids: list[int]) -> dict[int, RoomSummary]:
        if not room_ids:
            return {}
        counters = {
            int(doc["_id"]): int(doc["seq"])
            async for doc in self._counters.find({"_id": {"$in": room_ids}})
        }
        keys = {_key(room_id, user_id): room_id for room_id in room_ids}
        reads = {
            keys[doc["_id"]]: int(doc["seq"])
            async for doc in self._reads.find({"_id": {"$in": list(keys)}})
        }

        async def one(room_id: int) -> RoomSummary:
            marker = reads.get(room_id, 0)
            last_seq = counters.get(room_id, 0)
            last = None
            if last_seq:
                doc = await self._messages.find_one({"room_id": room_id, "seq": last_seq})
                last = _message(doc) if doc else None
            unread = 0
            if last_seq > marker:
                unread = await self._messages.count_documents(
                    {"room_id": room_id, "seq": {"$gt": marker}, "sender_id": {"$ne": user_id}}
                )
            return RoomSummary(room_id, last, unread, marker)

        results = await asyncio.gather(*(one(room_id) for room_id in room_ids))
        return {s.room_id: s for s in results}
