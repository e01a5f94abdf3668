"""Typed application and request keys (aiohttp 3.14 warns on string keys)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.directory.models import School
    from gateway.threads.dispatcher import Dispatcher
    from gateway.threads.inbound import InboundProcessor
    from gateway.threads.live import LiveHub

SETTINGS = web.AppKey("settings", Settings)
CHANNELS = web.AppKey("channels", dict)  # dict[str, Channel]
DISPATCHER: web.AppKey["Dispatcher"] = web.AppKey("dispatcher")
INBOUND: web.AppKey["InboundProcessor"] = web.AppKey("inbound")
LIVE: web.AppKey["LiveHub"] = web.AppKey("live")
SCHOOL: web.RequestKey["School"] = web.RequestKey("school")
API_KEY_NAME = web.RequestKey("api_key_name", str)
