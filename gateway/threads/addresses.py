"""Reply tokens, reply addresses and Message-IDs (DESIGN sections 2 and 4).

A reply token names one participant of one conversation. It is HMAC-SHA256(secret key, salt) cut to
128 bits and written in lower-case base32 (26 characters): mail systems may lower-case the local
part, and 128 bits keep it unguessable (DESIGN asks at least 120). The database keeps the salt and
SHA-256(token), never the token: a leaked database alone yields no working reply address, and the
outbox can still put the token in every e-mail by recomputing it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

TOKEN_RE = re.compile(r"^[a-z2-7]{26}$")
REPLY_ADDRESS_RE = re.compile(r"reply\+([a-z2-7]{26})@", re.IGNORECASE)
TOKEN_REFERENCE_RE = re.compile(r"<t\.([a-z2-7]{26})@", re.IGNORECASE)


def new_salt() -> str:
    return secrets.token_hex(16)


def reply_token(secret_key: str, salt: str) -> str:
    digest = hmac.new(secret_key.encode(), b"reply-token:" + salt.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:16]).decode().rstrip("=").lower()


def hash_token(token: str) -> str:
    return hashlib.sha256(token.lower().encode()).hexdigest()


def reply_address(token: str, domain: str) -> str:
    """Plus-addressing (RFC 5233 subaddress) keeps one mailbox for every conversation."""
    return f"reply+{token}@{domain}"


def token_reference(token: str, domain: str) -> str:
    """A msg-id carrying the token, put in References so a relay that drops "+token" still routes."""
    return f"<t.{token}@{domain}>"


def delivery_message_id(secret_key: str, delivery_id: int, domain: str) -> str:
    """Our Message-ID for one e-mail delivery: the same on every retry, so a duplicate after a
    crash is recognisable (and merged by most mail clients), and unguessable to outsiders."""
    tag = hmac.new(secret_key.encode(), b"message-id:%d" % delivery_id, hashlib.sha256).hexdigest()[:16]
    return f"<d{delivery_id}.{tag}@{domain}>"


def find_tokens(text: str) -> list[str]:
    """Every reply token in an address header or a References header, lower-cased, in order."""
    found = REPLY_ADDRESS_RE.findall(text) + TOKEN_REFERENCE_RE.findall(text)
    return [t.lower() for t in found]
