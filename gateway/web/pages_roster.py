"""`/directory/roster`: staff admins upload a roster file, check a preview, then apply it.

- GET  /directory/roster             the upload form, what files work, and the school's recent uploads;
- POST /directory/roster             read the file (streamed, up to ROSTER_MAX_BYTES: sessions.read_upload
                                     checks the CSRF token), preview it and keep it (RosterUpload), 303 to
- GET  /directory/roster/<id>        the preview: how many people would be created, updated, rejected, with
                                     the rejected lines and why; once applied, what applying did;
- POST /directory/roster/<id>/apply  write the accepted rows (upsert_users, one transaction), once.

Nothing reaches the directory before "Apply". Rejected rows are skipped when applying, after the
admin ticks a box saying so (the API is all or nothing; here most admins want the good rows in and
the list of the others to fix). The preview is worked out again from the stored file each time it
is shown and when it is applied, against the directory as it is then: if the counts the admin saw
have changed meanwhile, nothing is applied and the new preview is shown.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from gateway.directory.models import AuditLog, RosterUpload, School
from gateway.directory.roster import RosterError
from gateway.directory.roster_preview import RosterPreview, preview_roster
from gateway.directory.user_input import RowError
from gateway.directory.users import upsert_users
from gateway.errors import NotFound
from gateway.i18n import _, ngettext
from gateway.web import labels
from gateway.web.page_kit import SignedIn, form_int, redirect, render, signed_in_admin
from gateway.web.sessions import read_upload
from gateway.web.thread_view import clock

ROSTER_MAX_BYTES = 32 * 1024 * 1024  # the upload's own limit, independent of GATEWAY_MAX_REQUEST_BYTES
SHOWN = 200  # people listed per table of the preview (the counts are always exact)
RECENT = 20  # uploads listed under the form
KEEP_UNAPPLIED = timedelta(days=30)  # previews nobody applied are dropped after this
SKIPPED_KEPT = 200  # rejected rows remembered in the result of an applied upload
FILE_NAME = re.compile(r"[\x00-\x1f\x7f]")


def _school_param(viewer: SignedIn, school_id: int) -> int | None:
    return school_id if len(viewer.admin_of) > 1 else None


def _school_of(viewer: SignedIn, school_id: int) -> School:
    return next(m.school for m in viewer.staff if m.school_id == school_id)


def _clean_name(raw: str) -> str:
    """The file's own name (browsers may send a path), without control characters."""
    name = FILE_NAME.sub("", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:255]


def _file_problem(exc: RosterError) -> tuple[str, str]:
    """(what is wrong, the parser's detail) for a file that is no roster at all."""
    if exc.kind == "empty":
        return _("The file is empty."), ""
    if exc.kind == "binary":
        return (_("This is not a CSV file. In your spreadsheet, save the roster as “CSV UTF-8” and upload "
                  "that file."), "")
    if exc.kind == "not_roster":
        return (_("This file is not a roster we know: the first line must name the columns of a OneRoster "
                  "users.csv (sourcedId, role, …) or of our plain CSV (external_id, role, name, …)."), "")
    return _("This file cannot be read as a roster."), str(exc)


# -- the form --------------------------------------------------------------------------------------


async def roster_page(request: web.Request) -> web.Response:
    viewer, admin = await signed_in_admin(request, request.query.get("school"))
    return await _form(request, viewer, admin.school)


async def _form(request: web.Request, viewer: SignedIn, school: School, *, error: str | None = None,
                detail: str = "", status: int = 200) -> web.Response:
    uploads = await RosterUpload.filter(school_id=school.id).order_by("-id").limit(RECENT).values(
        "id", "file_name", "format", "rows", "to_create", "to_update", "rejected", "created_at", "applied_at",
        "uploaded_by__name")
    return render(request, "roster.html", {
        "school": school, "school_param": _school_param(viewer, school.id), "uploads": uploads,
        "fmt": clock(viewer.lang, school.timezone), "error": error, "detail": detail,
        "max_mb": ROSTER_MAX_BYTES // (1024 * 1024),
    }, status=status)


async def upload(request: web.Request) -> web.Response:
    viewer, admin = await signed_in_admin(request, request.query.get("school"))
    school = admin.school
    # Reads the body only now (for an admin), and checks the CSRF token before giving it back.
    _fields, file_name, data = await read_upload(request, ROSTER_MAX_BYTES)
    if not data and not file_name:  # the form was sent without choosing a file
        return await _form(request, viewer, school, error=_("Choose a roster file to upload."), status=422)
    try:
        preview = await preview_roster(school, data)
    except RosterError as exc:
        error, detail = _file_problem(exc)
        return await _form(request, viewer, school, error=error, detail=detail, status=422)
    now = datetime.now(timezone.utc)
    await RosterUpload.filter(school_id=school.id, applied_at=None, created_at__lt=now - KEEP_UNAPPLIED).delete()
    counts = preview.counts()
    row = await RosterUpload.create(
        school_id=school.id, uploaded_by_id=viewer.user.id, file_name=_clean_name(file_name),
        sha256=hashlib.sha256(data).hexdigest(), format=preview.format, data=preview.text, **counts)
    return redirect(f"/directory/roster/{row.id}")


# -- the preview and applying it -------------------------------------------------------------------


async def _upload_of(request: web.Request) -> tuple[SignedIn, RosterUpload]:
    """The signed-in admin and their school's upload named in the URL (404 for any other)."""
    viewer, _admin = await signed_in_admin(request)
    upload_id = form_int(request.match_info["id"])
    found = await RosterUpload.get_or_none(id=upload_id, school_id__in=viewer.admin_of) if upload_id else None
    if found is None:
        raise NotFound("no such roster upload")
    return viewer, found


async def preview_page(request: web.Request) -> web.Response:
    viewer, row = await _upload_of(request)
    return await _preview(request, viewer, row)


async def _preview(request: web.Request, viewer: SignedIn, row: RosterUpload, *, preview: RosterPreview | None = None,
                   error: str | None = None, notice: str | None = None, status: int = 200) -> web.Response:
    school = _school_of(viewer, row.school_id)
    uploader = await row.uploaded_by
    context: dict[str, Any] = {
        "upload": row, "uploader": uploader, "school": school, "school_param": _school_param(viewer, school.id),
        "fmt": clock(viewer.lang, school.timezone), "error": error, "notice": notice, "shown": SHOWN,
        "labels": labels, "preview": None, "result": row.result if row.applied_at else None,
        "format_name": _format_name(row.format),
    }
    if row.applied_at is None:
        if preview is None:
            try:
                preview = await preview_roster(school, row.data)
            except RosterError as exc:  # the stored file was read once: only a changed parser gets here
                error, detail = _file_problem(exc)
                context["error"] = f"{error} {detail}".strip()
                return render(request, "roster_preview.html", context, status=422)
        context["preview"] = preview
        context["rejected_rows"] = [(r.line, r.reason) for r in preview.rejected[:SHOWN]]
    return render(request, "roster_preview.html", context, status=status)


def _format_name(value: str) -> str:
    return {"oneroster": "OneRoster 1.1 users.csv", "plain": _("Plain CSV")}.get(value, value)


async def apply(request: web.Request) -> web.Response:
    viewer, row = await _upload_of(request)  # the CSRF token was checked by csrf_middleware
    form = await request.post()
    if row.applied_at is not None:
        return await _preview(request, viewer, row, error=_("This roster was applied already. Nothing more was "
                                                            "changed."), status=409)
    school = _school_of(viewer, row.school_id)
    preview = await preview_roster(school, row.data)
    counts = preview.counts()
    if form.get("preview") != preview.digest():  # not the preview the admin saw

        await RosterUpload.filter(id=row.id).update(**counts)
        return await _preview(request, viewer, row, preview=preview, status=409, error=_(
            "The directory changed since you opened this preview, so nothing was applied. Check the new "
            "preview below and apply again."))
    if preview.rejected and form.get("skip_rejected") != "yes":
        return await _preview(request, viewer, row, preview=preview, status=422, error=ngettext(
            "Tick the box to confirm that the rejected row is skipped.",
            "Tick the box to confirm that the %(num)s rejected rows are skipped.", len(preview.rejected))
            % {"num": len(preview.rejected)})
    if not preview.users:
        return await _preview(request, viewer, row, preview=preview, status=422,
                              error=_("No row of this file can be applied."))
    try:
        result = await _apply(viewer, row, preview)
    except (RowError, IntegrityError):
        # Someone changed the same people between the check and the write: nothing was written.
        return await _preview(request, viewer, row, status=409, error=_(
            "The directory changed while this roster was being applied, so nothing was applied. Check the "
            "preview again and apply it."))
    if result is None:
        row = await RosterUpload.get(id=row.id)
        return await _preview(request, viewer, row, status=409, error=_(
            "This roster was applied already. Nothing more was changed."))
    return redirect(f"/directory/roster/{row.id}")


async def _apply(viewer: SignedIn, row: RosterUpload, preview: RosterPreview) -> dict[str, Any] | None:
    """Write the accepted rows, mark the upload applied and audit it, all in one transaction.

    None when another request applied it first (the conditional update claims it: two clicks, two
    tabs, only one writes).
    """
    now = datetime.now(timezone.utc)
    async with in_transaction():
        claimed = await RosterUpload.filter(id=row.id, applied_at=None).update(applied_at=now)
        if not claimed:
            return None
        written = await upsert_users(_school_of(viewer, row.school_id), preview.users)
        result = {
            "created": written.created, "updated": written.updated, "skipped": len(preview.rejected),
            "skipped_rows": [[r.line, r.reason] for r in preview.rejected[:SKIPPED_KEPT]],
        }
        await RosterUpload.filter(id=row.id).update(result=result, **preview.counts())
        await AuditLog.create(
            school_id=row.school_id, actor=f"user:{viewer.user.id}", action="roster.applied",
            target=f"roster_upload:{row.id}",
            details={"created": written.created, "updated": written.updated, "skipped": len(preview.rejected),
                     "file_name": row.file_name, "sha256": row.sha256, "format": row.format})
    return result
