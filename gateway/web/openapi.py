"""GET /api/v1/openapi.json: the admin API described from the same models that validate it."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.web.schemas import (
    AttachIn,
    CommunicationIn,
    InvitationCampaignIn,
    ReplyIn,
    SchoolPatch,
    UsersPut,
)

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"],
                             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def _op(summary: str, *, body: type[BaseModel] | None = None, ok: int = 200, params: list[str] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(ok): {"description": "success", "content": {"application/json": {"schema": {"type": "object"}}}},
            "4XX": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params],
    }
    if body is not None:
        op["requestBody"] = _body(body)
    return op


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def build_openapi() -> dict[str, Any]:
    # Imported here: api_inbound imports gateway.web.api, which imports this module.
    from gateway.threads.models import InboundOutcome

    inbound = _op("Inbound items for triage, newest first, 100 a page")
    inbound["parameters"] = [
        _query("outcome", "only items with this outcome", {"type": "string", "enum": [o.value for o in InboundOutcome]}),
        _query("before", "only items older than this id (the next_before of the previous page)",
               {"type": "string", "pattern": "^[0-9]+$"}),
    ]
    schemas: dict[str, Any] = {"Error": ERROR}
    campaigns = _op("Invitation campaigns of this school, newest first, 100 a page")
    campaigns["parameters"] = [
        _query("before", "only campaigns older than this id (the next_before of the previous page)",
               {"type": "string", "pattern": "^[0-9]+$"}),
    ]
    start = _op("Start an invitation campaign (202, planned in the background); a dry run answers 200 with "
                "the counts and writes no invitation", body=InvitationCampaignIn, ok=202)
    start["responses"]["200"] = {"description": "dry run: the counts",
                                 "content": {"application/json": {"schema": {"type": "object"}}}}
    for model in (SchoolPatch, UsersPut, CommunicationIn, ReplyIn, AttachIn, InvitationCampaignIn):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "School conversation gateway admin API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {"schemas": schemas,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "security": [{"apiKey": []}],
        "paths": {
            "/openapi.json": {"get": {**_op("This document"), "security": []}},
            "/school": {"get": _op("The school this key belongs to"),
                        "patch": _op("Change the school's settings", body=SchoolPatch)},
            "/users": {"put": _op("Create or update people by external_id (all or nothing)", body=UsersPut)},
            "/users/{external_id}": {"get": _op("One person, their contact points and their state", params=["external_id"])},
            "/communications": {"post": _op("Send a conversation, announcement or newsletter", body=CommunicationIn, ok=201)},
            "/conversations/{id}": {"get": _op("A conversation with its messages and deliveries", params=["id"])},
            "/conversations/{id}/messages": {"post": _op("A staff reply in a conversation", body=ReplyIn, ok=201, params=["id"])},
            "/inbound": {"get": inbound},
            "/inbound/{id}/attach": {"post": _op("Put an unmatched inbound item into a conversation", body=AttachIn,
                                                 ok=201, params=["id"])},
            "/invitation-campaigns": {"get": campaigns, "post": start},
            "/invitation-campaigns/{id}": {"get": _op("One campaign: its state, counts and delivery progress",
                                                      params=["id"])},
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())
