"""The directory: schools (tenants), people, their memberships, contact points, sections, API keys.

Every query that starts from a request is scoped to one School (DESIGN section 2).
"""
from __future__ import annotations

import enum

from tortoise import fields
from tortoise.models import Model


class Role(str, enum.Enum):
    STAFF = "staff"
    GUARDIAN = "guardian"
    STUDENT = "student"


class ChannelPreference(str, enum.Enum):
    SMS = "sms"
    EMAIL = "email"
    BOTH = "both"


class ContactKind(str, enum.Enum):
    PHONE = "phone"
    EMAIL = "email"


class School(Model):
    id = fields.IntField(primary_key=True)
    slug = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=200)
    timezone = fields.CharField(max_length=64, default="UTC")
    default_locale = fields.CharField(max_length=16, default="en")
    # Region used to read phone numbers written without a country code (ISO 3166-1 alpha-2).
    default_region = fields.CharField(max_length=2, default="US")
    sms_numbers: list[str] = fields.JSONField(default=list)
    reply_domain = fields.CharField(max_length=253, null=True)
    # Minutes after local midnight; SMS that is not urgent waits while quiet (DESIGN section 5).
    quiet_hours_start = fields.SmallIntField(default=21 * 60)
    quiet_hours_end = fields.SmallIntField(default=7 * 60)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "school"


class User(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    locale = fields.CharField(max_length=16, null=True)
    channel_preference = fields.CharEnumField(ChannelPreference, max_length=8, default=ChannelPreference.EMAIL)
    password_hash = fields.CharField(max_length=255, null=True)
    joined_at = fields.DatetimeField(null=True)
    login_enabled = fields.BooleanField(default=False)
    # One-click unsubscribe from newsletters (RFC 8058); conversations and announcements still arrive.
    newsletters_unsubscribed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "user"


class Membership(Model):
    """A user's place in one school. `external_id` is the school's own id for the person."""

    id = fields.IntField(primary_key=True)
    school: fields.ForeignKeyRelation[School] = fields.ForeignKeyField("models.School", related_name="memberships")
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField("models.User", related_name="memberships")
    external_id = fields.CharField(max_length=128)
    role = fields.CharEnumField(Role, max_length=16)
    is_admin = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "membership"
        unique_together = (("school", "external_id"),)
        # user_id: every signed-in page loads the person's memberships.
        indexes = (("school_id", "role"), ("user_id",))


class ContactPoint(Model):
    """One phone (E.164) or e-mail (lower-cased, IDNA) of a user, and what we know about it.

    An address may belong to several users (a shared household mailbox): never unique alone.
    """

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField("models.User", related_name="contact_points")
    kind = fields.CharEnumField(ContactKind, max_length=8)
    address = fields.CharField(max_length=320)
    opted_out_at = fields.DatetimeField(null=True)
    bouncing_at = fields.DatetimeField(null=True)
    unreachable_reason = fields.CharField(max_length=200, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "contact_point"
        unique_together = (("user", "kind", "address"),)
        indexes = (("kind", "address"),)

    @property
    def problem(self) -> str | None:
        """Why this address cannot be used now, or None when it can."""
        if self.opted_out_at is not None:
            return "opted_out"
        if self.bouncing_at is not None:
            return "bouncing"
        if self.unreachable_reason:
            return "unreachable"
        return None


class Section(Model):
    id = fields.IntField(primary_key=True)
    school: fields.ForeignKeyRelation[School] = fields.ForeignKeyField("models.School", related_name="sections")
    name = fields.CharField(max_length=200)

    class Meta:
        table = "section"
        unique_together = (("school", "name"),)


class SectionMember(Model):
    id = fields.IntField(primary_key=True)
    section: fields.ForeignKeyRelation[Section] = fields.ForeignKeyField("models.Section", related_name="members")
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField("models.User", related_name="section_memberships")

    class Meta:
        table = "section_member"
        unique_together = (("section", "user"),)


class Relationship(Model):
    """guardian is responsible for student, within one school."""

    id = fields.IntField(primary_key=True)
    school: fields.ForeignKeyRelation[School] = fields.ForeignKeyField("models.School", related_name="relationships")
    guardian: fields.ForeignKeyRelation[User] = fields.ForeignKeyField("models.User", related_name="wards")
    student: fields.ForeignKeyRelation[User] = fields.ForeignKeyField("models.User", related_name="guardians")

    class Meta:
        table = "relationship"
        unique_together = (("school", "guardian", "student"),)


class ApiKey(Model):
    """An admin API key. Only its SHA-256 is stored (the key itself has 256 random bits)."""

    id = fields.IntField(primary_key=True)
    school: fields.ForeignKeyRelation[School] = fields.ForeignKeyField("models.School", related_name="api_keys")
    name = fields.CharField(max_length=100, default="default")
    key_hash = fields.CharField(max_length=64, unique=True)
    prefix = fields.CharField(max_length=12)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_key"


class AuditLog(Model):
    id = fields.IntField(primary_key=True)
    school: fields.ForeignKeyNullableRelation[School] = fields.ForeignKeyField(
        "models.School", related_name="audit_entries", null=True
    )
    actor = fields.CharField(max_length=200)
    action = fields.CharField(max_length=64)
    target = fields.CharField(max_length=200, default="")
    details: dict = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "audit_log"
        indexes = (("school_id", "created_at"),)


class RosterUpload(Model):
    """A roster file an admin uploaded in the School Directory, kept between its preview and applying it.

    `data` is the decoded text (the preview and the apply read it again, so what is applied is what
    was previewed). The counts are those of the preview (`rejected` rows are skipped when applied).
    `result` is what applying did: created, updated and skipped counts and the first skipped rows.
    """

    id = fields.IntField(primary_key=True)
    school: fields.ForeignKeyRelation[School] = fields.ForeignKeyField("models.School", related_name="roster_uploads")
    uploaded_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField("models.User", related_name="roster_uploads")
    file_name = fields.CharField(max_length=255, default="")
    sha256 = fields.CharField(max_length=64)
    format = fields.CharField(max_length=16)  # oneroster or plain
    data = fields.TextField()
    rows = fields.IntField(default=0)
    to_create = fields.IntField(default=0)
    to_update = fields.IntField(default=0)
    rejected = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    applied_at = fields.DatetimeField(null=True)
    result: dict | None = fields.JSONField(null=True)

    class Meta:
        table = "roster_upload"
        indexes = (("school_id", "created_at"),)
