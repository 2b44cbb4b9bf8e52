"""Typed keys of everything the composition root puts in the aiohttp app."""

from __future__ import annotations

from aiohttp import web

from persistence.factory import Stores
from scheduler.service import CallTimers
from signaling.auth import TokenVerifier
from signaling.calls.service import CallService
from signaling.chat.service import ChatService
from signaling.config import Settings
from signaling.gifts.service import GiftService
from signaling.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
VERIFIER = web.AppKey("verifier", TokenVerifier)
METRICS = web.AppKey("metrics", Metrics)
STORES = web.AppKey("stores", Stores)
CALLS = web.AppKey("calls", CallService)
CHAT = web.AppKey("chat", ChatService)
GIFTS = web.AppKey("gifts", GiftService)
#: The call timers, for operators and tests that fire a deadline by hand.
TIMERS = web.AppKey("timers", CallTimers)
