"""Admin API handlers (/api/v1). A key belongs to one school, and every query is scoped to it."""
from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gateway.directory.contacts import InvalidAddress, normalize_phone
from gateway.directory.models import (
    AuditLog,
    ContactPoint,
    Membership,
    Relationship,
    School,
    SectionMember,
)
from gateway.directory.schools import authenticate_api_key
from gateway.directory.user_input import RowError, normalize_locale
from gateway.directory.users import upsert_users
from gateway.errors import Conflict, GatewayError, InvalidInput, NotFound
from gateway.threads.compose import RecipientSpec, post_staff_reply, send_communication
from gateway.threads.models import Conversation, Delivery, Message, Origin, Participant
from gateway.web import keys
from gateway.web.openapi import openapi as openapi_document
from gateway.web.schemas import CommunicationIn, ReplyIn, SchoolPatch, UsersPut

M = TypeVar("M", bound=BaseModel)
# Handlers that need no API key. Matched by route: a path test such as endswith("/openapi.json")
# also let GET /users/openapi.json through unauthenticated (and then fail with a 500).
PUBLIC_HANDLERS = frozenset({openapi_document})


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="gateway"'}  # RFC 6750 section 3


class BodyTooLarge(GatewayError):
    status = 413
    code = "body_too_large"


@web.middleware
async def api_key_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.match_info.route.handler in PUBLIC_HANDLERS:  # by route, not by path suffix
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    api_key = await authenticate_api_key(key.strip())
    if api_key is None:
        raise Unauthorized("the API key is not valid")
    request[keys.SCHOOL] = api_key.school
    request[keys.API_KEY_NAME] = api_key.name
    return await handler(request)


async def read_json(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GatewayError(f"the body is not valid JSON: {exc}", code="malformed_json") from None
    except RecursionError:
        raise GatewayError("the body is not usable JSON: nested too deeply", code="malformed_json") from None
    if not isinstance(data, dict):
        raise GatewayError("the body must be a JSON object", code="malformed_json")
    return model.model_validate(data)


def _actor(request: web.Request) -> str:
    return f"api-key:{request[keys.API_KEY_NAME]}"


def _check_body(request: web.Request, body: str) -> None:
    limit = request.config_dict[keys.SETTINGS].max_body_chars
    if len(body) > limit:
        raise BodyTooLarge(f"body: {len(body)} characters; the limit is {limit}")


async def patch_school(request: web.Request) -> web.Response:
    school = request[keys.SCHOOL]
    patch = await read_json(request, SchoolPatch)
    changes: dict[str, Any] = patch.model_dump(exclude_unset=True, exclude={"quiet_hours", "sms_numbers"})
    if "default_locale" in changes:
        try:
            changes["default_locale"] = normalize_locale(changes["default_locale"])
        except ValueError as exc:
            raise InvalidInput(f"default_locale: {exc}") from None
    if "default_region" in changes:
        changes["default_region"] = changes["default_region"].upper()
    if patch.sms_numbers is not None:
        numbers = []
        for i, raw in enumerate(patch.sms_numbers):
            try:
                numbers.append(normalize_phone(raw, changes.get("default_region", school.default_region)))
            except InvalidAddress as exc:
                raise InvalidInput(f"sms_numbers[{i}]: {exc}") from None
        changes["sms_numbers"] = list(dict.fromkeys(numbers))
        await _check_numbers_free(school, changes["sms_numbers"])
    if "quiet_hours" in patch.model_fields_set:
        qh = patch.quiet_hours
        start = end = 0
        if qh is not None:  # null turns quiet hours off
            start = int(qh.start[:2]) * 60 + int(qh.start[3:])
            end = int(qh.end[:2]) * 60 + int(qh.end[3:])
        changes["quiet_hours_start"], changes["quiet_hours_end"] = start, end
    async with in_transaction():
        for field, value in changes.items():
            setattr(school, field, value)
        if changes:
            await school.save(update_fields=list(changes))
            await AuditLog.create(school=school, actor=_actor(request), action="school.update",
                                  details={"fields": sorted(changes)})
    return web.json_response(school_json(school))


async def _check_numbers_free(school: School, numbers: list[str]) -> None:
    """Inbound SMS finds its school by the number it was sent to: a number serves one school only."""
    wanted = set(numbers)
    if not wanted:
        return
    for other in await School.exclude(id=school.id).only("id", "slug", "sms_numbers"):
        taken = wanted.intersection(other.sms_numbers or [])
        if taken:
            raise Conflict(f"sms_numbers: {min(taken)} already sends for another school")


def school_json(school: Any) -> dict[str, Any]:
    def hhmm(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"

    quiet = None
    if school.quiet_hours_start != school.quiet_hours_end:
        quiet = {"start": hhmm(school.quiet_hours_start), "end": hhmm(school.quiet_hours_end)}
    return {
        "slug": school.slug, "name": school.name, "timezone": school.timezone,
        "default_locale": school.default_locale, "default_region": school.default_region,
        "sms_numbers": school.sms_numbers, "quiet_hours": quiet,
    }


async def get_school(request: web.Request) -> web.Response:
    return web.json_response(school_json(request[keys.SCHOOL]))


async def put_users(request: web.Request) -> web.Response:
    school = request[keys.SCHOOL]
    body = await read_json(request, UsersPut)
    try:
        result = await upsert_users(school, body.users)
    except RowError as exc:
        raise InvalidInput(str(exc)) from None
    except IntegrityError:
        raise Conflict("the same people are being changed by another request; send this one again") from None
    await AuditLog.create(school=school, actor=_actor(request), action="users.upsert",
                          details={"created": result.created, "updated": result.updated})
    return web.json_response({"created": result.created, "updated": result.updated})


async def get_user(request: web.Request) -> web.Response:
    school = request[keys.SCHOOL]
    ext = request.match_info["external_id"]
    membership = await Membership.get_or_none(school=school, external_id=ext).select_related("user")
    if membership is None:
        raise NotFound(f"no person with external_id {ext!r} in this school")
    user = membership.user
    contacts = await ContactPoint.filter(user=user).order_by("kind", "id")
    wards = await Relationship.filter(school=school, guardian=user).values_list("student_id", flat=True)
    guardian_of = await Membership.filter(school=school, user_id__in=list(wards)).values_list("external_id", flat=True)
    sections = await SectionMember.filter(user=user, section__school=school).values_list("section__name", flat=True)
    return web.json_response({
        "external_id": membership.external_id,
        "role": membership.role.value,
        "is_admin": membership.is_admin,
        "name": user.name,
        "locale": user.locale,
        "channel_preference": user.channel_preference.value,
        "login_enabled": user.login_enabled,
        "joined_at": user.joined_at.isoformat() if user.joined_at else None,
        "guardian_of": sorted(guardian_of),
        "sections": sorted(sections),
        "contact_points": [
            {"kind": c.kind.value, "address": c.address, "state": c.problem or "ok",
             "opted_out_at": _iso(c.opted_out_at), "bouncing_at": _iso(c.bouncing_at),
             "unreachable_reason": c.unreachable_reason}
            for c in contacts
        ],
    })


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


async def post_communication(request: web.Request) -> web.Response:
    school = request[keys.SCHOOL]
    body = await read_json(request, CommunicationIn)
    _check_body(request, body.body)
    r = body.recipients
    if not (r.users or r.sections or r.roles):
        raise InvalidInput("recipients: name at least one user, section or role", code="no_recipients")
    result = await send_communication(
        school, sender_external_id=body.sender, kind=body.kind,
        recipients=RecipientSpec(users=r.users, sections=r.sections, roles=r.roles),
        subject=body.subject, body=body.body, urgent=body.urgent, private=body.private, origin=Origin.API,
        secret_key=request.config_dict[keys.SETTINGS].secret_key,
    )
    _wake(request)
    return web.json_response(
        {"conversation_ids": result.conversation_ids, "deliveries": result.deliveries, "suppressed": result.suppressed},
        status=201,
    )


async def post_message(request: web.Request) -> web.Response:
    school = request[keys.SCHOOL]
    conversation_id = _int_id(request)
    body = await read_json(request, ReplyIn)
    _check_body(request, body.body)
    message, deliveries = await post_staff_reply(
        school, conversation_id, sender_external_id=body.sender, body=body.body, origin=Origin.API,
        secret_key=request.config_dict[keys.SETTINGS].secret_key,
    )
    _wake(request)
    await request.config_dict[keys.LIVE].publish(conversation_id)
    return web.json_response({"message_id": message.id, "deliveries": deliveries}, status=201)


def _int_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFound(f"no conversation {raw!r} in this school")
    return int(raw)


def _wake(request: web.Request) -> None:
    dispatcher = request.config_dict.get(keys.DISPATCHER)
    if dispatcher is not None:
        dispatcher.wake()


async def get_conversation(request: web.Request) -> web.Response:
    school = request[keys.SCHOOL]
    conversation_id = _int_id(request)
    conversation = await Conversation.get_or_none(id=conversation_id, school=school)
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id} in this school")
    participants = await Participant.filter(conversation=conversation).order_by("id").values("user_id", "role", "is_owner")
    user_ids = {p["user_id"] for p in participants}
    messages = await Message.filter(conversation=conversation).order_by("created_at", "id")
    user_ids |= {m.author_id for m in messages if m.author_id}
    deliveries = await Delivery.filter(message_id__in=[m.id for m in messages]).order_by("id").values(
        "id", "message_id", "recipient_id", "channel", "status", "error_code", "error_reason", "sent_at")
    user_ids |= {d["recipient_id"] for d in deliveries}
    ext = dict(await Membership.filter(school=school, user_id__in=list(user_ids)).values_list("user_id", "external_id"))
    by_message: dict[int, list[dict[str, Any]]] = {}
    for d in deliveries:
        by_message.setdefault(d["message_id"], []).append({
            "id": d["id"], "recipient": ext.get(d["recipient_id"]), "channel": d["channel"],
            "status": d["status"].value, "error_code": d["error_code"], "error_reason": d["error_reason"],
        })
    return web.json_response({
        "id": conversation.id,
        "kind": conversation.kind.value,
        "subject": conversation.subject,
        "state": conversation.state.value,
        "participants": [
            {"external_id": ext.get(p["user_id"]), "role": p["role"], "owner": p["is_owner"]} for p in participants
        ],
        "messages": [
            {
                "id": m.id, "author": ext.get(m.author_id) if m.author_id else None,
                "direction": m.direction.value, "channel": m.origin.value,
                "routed_by": m.routed_by.value if m.routed_by else None,
                "sender_unverified": m.sender_unverified, "body": m.body,
                "created_at": m.created_at.isoformat(), "deliveries": by_message.get(m.id, []),
            }
            for m in messages
        ],
    })
