"""The post-mortem's calendar invite: one ``.ics`` file with one VEVENT (RFC 5545).

Written with the ``icalendar`` library. The UID is stable per incident, so importing a
newer invite for the same incident updates the meeting instead of adding a second one
(``sequence`` tells calendars which version is newer). Times are UTC (``...Z``): every
client converts them to its reader's zone, no VTIMEZONE needed. No ORGANIZER: rollbot is
nobody's mailbox, whoever imports or forwards the file organises the meeting (hence
``METHOD:PUBLISH``, not an iTIP request). Every text passes through the redactor.
"""

from __future__ import annotations

from datetime import UTC, datetime

from icalendar import Calendar, Event

from bot.redact import redact

PRODID = "-//rollbot//post-mortem invite//EN"
SUMMARY_LIMIT = 120


def invite_uid(incident_id: int, domain: str = "rollbot") -> str:
    """The same UID for every invite of one incident's post-mortem."""
    return f"postmortem-inc-{incident_id}@{domain}"


def invite_summary(ref: str, headline: str = "") -> str:
    """``Post-mortem: INC-3 — bad migration`` on one line, shortened when long."""
    text = " ".join(redact(headline).split())
    summary = f"Post-mortem: {ref}" + (f" — {text}" if text else "")
    return summary if len(summary) <= SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 1] + "…"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime in an invite; use an aware one")
    return moment.astimezone(UTC).replace(microsecond=0)


def postmortem_invite(
    *,
    incident_id: int,
    ref: str,
    start: datetime,
    end: datetime,
    stamp: datetime,
    headline: str = "",
    thread_link: str | None = None,
    draft_name: str | None = None,
    details: str = "",
    sequence: int = 0,
) -> bytes:
    """The ``.ics`` bytes of the invite for ``ref``'s post-mortem from ``start`` to ``end``.

    ``stamp`` is when the invite was made (DTSTAMP); ``details`` is added to the
    description; ``sequence`` grows each time a new invite is written for the incident.
    """
    if end <= start:
        raise ValueError("the meeting must end after it starts")
    lines = [f"Post-mortem of {ref}" + (f": {' '.join(headline.split())}" if headline else "")]
    if thread_link:
        lines.append(f"Incident thread: {thread_link}")
    if draft_name:
        lines.append(f"Draft: {draft_name} (written by rollbot; bring your notes)")
    if details:
        lines.append(details)

    event = Event()
    event.add("uid", invite_uid(incident_id))
    event.add("dtstamp", _utc(stamp))
    event.add("dtstart", _utc(start))
    event.add("dtend", _utc(end))
    event.add("summary", invite_summary(ref, headline))
    event.add("description", redact("\n".join(lines)))
    event.add("sequence", max(0, sequence))
    event.add("status", "TENTATIVE")
    event.add("transp", "OPAQUE")
    if thread_link:
        event.add("url", redact(thread_link))

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add_component(event)
    return calendar.to_ical()
