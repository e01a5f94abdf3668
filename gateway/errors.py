"""Errors named after outcomes. The web layer turns each into `{"error": {"code", "message"}}`."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class GatewayError(Exception):
    status = 400
    code = "bad_request"
    headers: dict[str, str] = {}  # extra response headers (e.g. WWW-Authenticate on a 401)

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class InvalidInput(GatewayError):
    status = 422
    code = "invalid"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


def _location(loc: tuple[int | str, ...]) -> str:
    """("users", 3, "phone") → "users[3].phone"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("function-"):
            out += f".{part}" if out else part
    return out


def validation_message(exc: "ValidationError") -> str:
    """The first problem of a pydantic ValidationError as "where: what"."""
    first = exc.errors(include_url=False)[0]
    where = _location(tuple(first["loc"]))
    msg = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return f"{where}: {msg}" if where else msg
