"""Every route of the gateway, declared in one place."""
from __future__ import annotations

from aiohttp import web

from gateway.web import api, api_inbound, openapi, pages, webhooks


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", pages.healthz)
    app.router.add_get("/metrics", pages.metrics)
    app.router.add_get("/dev/mailbox", pages.dev_mailbox)
    app.router.add_get("/m/{token}", pages.message_view)
    app.router.add_route("GET", "/unsubscribe/{token}", pages.unsubscribe)
    app.router.add_route("POST", "/unsubscribe/{token}", pages.unsubscribe)
    app.router.add_post("/webhooks/twilio/sms", webhooks.twilio_sms)
    app.router.add_post("/webhooks/twilio/status", webhooks.twilio_status)
    app.router.add_post("/webhooks/email", webhooks.inbound_email)

    api_app = web.Application(middlewares=[api.api_key_middleware])
    api_app.router.add_get("/openapi.json", openapi.openapi)
    api_app.router.add_get("/school", api.get_school)
    api_app.router.add_patch("/school", api.patch_school)
    api_app.router.add_put("/users", api.put_users)
    api_app.router.add_get("/users/{external_id}", api.get_user)
    api_app.router.add_post("/communications", api.post_communication)
    api_app.router.add_get("/conversations/{id}", api.get_conversation)
    api_app.router.add_post("/conversations/{id}/messages", api.post_message)
    api_app.router.add_get("/inbound", api_inbound.list_inbound)
    api_app.router.add_post("/inbound/{id}/attach", api_inbound.attach_inbound)
    app.add_subapp("/api/v1", api_app)
