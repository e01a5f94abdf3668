"""Request bodies of the admin API. Unknown fields are errors (extra="forbid"), and the same models
describe the API in /api/v1/openapi.json."""
from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from gateway.directory.models import Role
from gateway.directory.user_input import UserIn
from gateway.threads.models import ConversationKind

HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuietHours(Strict):
    start: str = Field(description="HH:MM, school local time", examples=["21:00"])
    end: str = Field(description="HH:MM, school local time", examples=["07:00"])

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError("must be HH:MM (24-hour)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "QuietHours":
        if self.start == self.end:
            raise ValueError("start and end must differ; send \"quiet_hours\": null to turn quiet hours off")
        return self


class SchoolPatch(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    timezone: str | None = Field(default=None, examples=["America/Los_Angeles"])
    default_locale: str | None = Field(default=None, examples=["es"])
    default_region: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = Field(
        default=None, description="ISO 3166 country used to read local phone numbers", examples=["US"])
    sms_numbers: list[str] | None = Field(default=None, max_length=100, description="our Twilio numbers, E.164")
    quiet_hours: QuietHours | None = None

    @field_validator("name", "timezone", "default_locale", "default_region", "sms_numbers")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Only quiet_hours may be null (it turns quiet hours off); to keep a field, leave it out.
        if value is None:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name such as Europe/Madrid") from None
        return value


class UsersPut(Strict):
    users: list[UserIn] = Field(max_length=20_000)


class RecipientsIn(Strict):
    users: list[ExternalId] = Field(default_factory=list, max_length=100_000)
    sections: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(default_factory=list, max_length=1000)
    roles: list[Role] = Field(default_factory=list)


class CommunicationIn(Strict):
    kind: ConversationKind
    sender: ExternalId = Field(description="external_id of the staff member sending")
    recipients: RecipientsIn
    subject: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    urgent: bool = False
    private: bool = Field(default=False, description="one conversation per recipient")


class ReplyIn(Strict):
    sender: ExternalId
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class AttachIn(Strict):
    conversation_id: int = Field(gt=0, description="a conversation of this school")


class InvitationCampaignIn(Strict):
    audiences: list[Literal["staff", "guardians", "students"]] = Field(
        min_length=1, max_length=3, description="who to invite; students only where their login is enabled",
        examples=[["guardians", "staff"]])
    dry_run: bool = Field(default=False, description="count who would be invited and skipped; write nothing")
    cooldown_days: int = Field(default=7, ge=0, le=365,
                               description="skip people invited (by any campaign) fewer than this many days ago")
    max_invitations: int = Field(default=10, ge=1, le=100,
                                 description="skip people invited this many times already (lifetime cap)")
