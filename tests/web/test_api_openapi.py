"""GET /api/v1/openapi.json: an OpenAPI 3.1 document that describes every admin API route."""
from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.settings import load_settings

METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


@pytest.fixture
async def client(aiohttp_client):
    """The real app without a database: the document must not need one (nor a key)."""
    return await aiohttp_client(create_app(load_settings({}), run_worker=False, own_database=False))


async def fetch(client) -> dict[str, Any]:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    return await response.json()


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def api_routes(app: web.Application) -> set[tuple[str, str]]:
    """(path relative to /api/v1, method) for every route of the admin API sub-application."""
    (sub,) = [r for r in app.router.resources() if isinstance(r, web.PrefixedSubAppResource) and r.canonical == "/api/v1"]
    found = set()
    for route in sub:  # iterating a sub-application resource yields its routes, prefixed
        if route.method not in ("HEAD", "*"):
            found.add((route.resource.canonical.removeprefix("/api/v1"), route.method.lower()))
    return found


async def test_openapi_needs_no_key(client):
    doc = await fetch(client)  # no Authorization header
    assert doc["openapi"].startswith("3.1.")


async def test_openapi_has_the_31_shape(client):
    doc = await fetch(client)
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert isinstance(doc["info"]["title"], str) and doc["info"]["title"]
    assert isinstance(doc["info"]["version"], str)
    assert doc["servers"] == [{"url": "/api/v1"}]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"apiKey": []}]

    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, f"dangling $ref {ref}"

    for path, item in doc["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            assert method in METHODS, (path, method)
            assert op["responses"], (path, method)
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), status
                assert response["description"]
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, (path, method)
            for p in op.get("parameters", []):
                assert p["in"] in ("path", "query") and "schema" in p
                if p["in"] == "path":
                    assert p["required"] is True
            if "requestBody" in op:
                assert "application/json" in op["requestBody"]["content"]
            error = op["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}


async def test_openapi_lists_every_route(client):
    doc = await fetch(client)
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert documented == api_routes(client.app)


async def test_openapi_bodies_come_from_the_validating_models(client):
    doc = await fetch(client)
    schemas = doc["components"]["schemas"]
    put = doc["paths"]["/users"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert put == {"$ref": "#/components/schemas/UsersPut"}
    user = schemas["UserIn"]
    assert user["additionalProperties"] is False
    assert set(user["required"]) == {"external_id", "role", "name"}
    assert {"email", "phone", "locale", "channel_preference", "login_enabled", "guardian_of", "sections"} <= set(
        user["properties"])
    patch = schemas["SchoolPatch"]
    assert {"name", "timezone", "default_locale", "sms_numbers", "quiet_hours"} <= set(patch["properties"])
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert schemas["Error"]["properties"]["error"]["required"] == ["code", "message"]
