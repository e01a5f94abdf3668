"""Invitation campaigns and the invitations they record (DESIGN section 6).

A campaign is one run over a school's audiences. Every person it considers gets one Invitation row
(unique per campaign and user, which is what makes a run resumable and idempotent): either
`invited`, with the login token and the outbox delivery that carries it, or `skipped`, with the
reason. Cooldown and lifetime cap are computed from the `invited` rows of every campaign.
"""
from __future__ import annotations

import enum

from tortoise import fields
from tortoise.models import Model


class CampaignState(str, enum.Enum):
    QUEUED = "queued"      # written by the API, not started yet
    RUNNING = "running"    # a process holds the lease and is planning it
    DONE = "done"          # planned: every invitation is in the outbox (or the dry run is counted)


class InvitationState(str, enum.Enum):
    INVITED = "invited"    # a delivery carrying a first_login link is in the outbox
    SKIPPED = "skipped"    # not invited, `skip_reason` says why


class SkipReason(str, enum.Enum):
    JOINED = "joined"                  # has logged in already
    NOT_ENABLED = "not_enabled"        # a student whose login is not enabled
    NO_CONTACT = "no_contact"          # no usable e-mail or phone (missing, opted out, bouncing, unreachable)
    CAP = "cap"                        # reached the lifetime number of invitations
    COOLDOWN = "cooldown"              # invited too recently (by any campaign)


AUDIENCES = ("staff", "guardians", "students")


class InvitationCampaign(Model):
    """One run of invitations over a school's audiences, with its counts and its progress."""

    id = fields.IntField(primary_key=True)
    school = fields.ForeignKeyField("models.School", related_name="invitation_campaigns")
    audiences: list[str] = fields.JSONField(default=list)  # staff | guardians | students
    dry_run = fields.BooleanField(default=False)
    cooldown_days = fields.SmallIntField(default=7)
    max_invitations = fields.SmallIntField(default=10)  # the lifetime cap per person, across campaigns
    state = fields.CharEnumField(CampaignState, max_length=8, default=CampaignState.QUEUED)
    targeted = fields.IntField(default=0)
    invited = fields.IntField(default=0)
    skipped_joined = fields.IntField(default=0)
    skipped_not_enabled = fields.IntField(default=0)
    skipped_no_contact = fields.IntField(default=0)
    skipped_cooldown = fields.IntField(default=0)
    skipped_cap = fields.IntField(default=0)
    created_by = fields.CharField(max_length=200)  # the actor, as in the audit log
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    # The process planning it holds a lease, renewed as it goes. A queued or running campaign whose
    # lease ran out (its process died) is taken over by a worker and resumes where it stopped.
    lease_until = fields.DatetimeField(null=True)
    claimed_by = fields.CharField(max_length=64, null=True)
    attempts = fields.SmallIntField(default=0)
    error = fields.CharField(max_length=500, null=True)

    class Meta:
        table = "invitation_campaign"
        indexes = (("school_id", "created_at"), ("state", "lease_until"))


class Invitation(Model):
    """One person considered by one campaign: invited (token and delivery) or skipped (reason)."""

    id = fields.IntField(primary_key=True)
    campaign = fields.ForeignKeyField("models.InvitationCampaign", related_name="invitations")
    user = fields.ForeignKeyField("models.User", related_name="invitations")
    state = fields.CharEnumField(InvitationState, max_length=8)
    skip_reason = fields.CharEnumField(SkipReason, max_length=16, null=True)
    channel = fields.CharField(max_length=8, null=True)  # sms | email, for invited rows
    delivery = fields.ForeignKeyField("models.Delivery", related_name="invitations", null=True)
    login_token = fields.ForeignKeyField("models.LoginToken", related_name="invitations", null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "invitation"
        unique_together = (("campaign", "user"),)
        indexes = (("user_id", "state", "created_at"),)
