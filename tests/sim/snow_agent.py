"""The agent's view of the simulated instance: plain HTML, no JavaScript.

`/` lists the tickets (incident, sc_req_item); `/incident.do?sys_id=...`
and `/sc_req_item.do?sys_id=...` show one ticket as a form does, with the
imper.ai Verification field rendered as the sanitized HTML it holds and
the work notes newest first.  Stable element ids (imperai-verification,
state, work-notes, ...) are there for browser tests.  No login: this is a
simulator convenience, reachable on loopback only.
"""

import html

from snow_html import sanitize
from snow_store import VERIFICATION_FIELD

TICKET_TABLES = ("incident", "sc_req_item")
STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f2f4f5}
.html-field{border:1px solid #9ab;padding:.6em;min-height:1.5em;background:#fbfdff}
.html-field>:first-child{margin-top:0}.html-field>:last-child{margin-bottom:0}
#brand{border-bottom:3px solid #62d84e;padding:.4em 0;margin-bottom:1em}
#brand strong{font-size:1.3em;color:#293e40}#brand small{color:#666}
.journal-entry{border-left:3px solid #9ab;margin:.5em 0;padding:.2em .6em}
.journal-meta{color:#555;font-size:.9em}
.journal-text{white-space:pre-wrap}
"""

# Every page says whose it is, so a person walking the demo can tell the
# two simulators apart.
BRAND = ('<header id="brand"><strong>ServiceNow</strong> <small>simulator - agent view</small>'
         '</header>')

# Form rows per table: (label, field, element id).
FORM_FIELDS = {
    "incident": (
        ("Caller", "caller_id", "caller"),
        ("Category", "category", "category"),
        ("Subcategory", "subcategory", "subcategory"),
        ("State", "state", "state"),
        ("Priority", "priority", "priority"),
        ("Assignment group", "assignment_group", "assignment-group"),
        ("Assigned to", "assigned_to", "assigned-to"),
        ("Short description", "short_description", "short-description"),
        ("Close code", "close_code", "close-code"),
        ("Close notes", "close_notes", "close-notes"),
    ),
    "sc_req_item": (
        ("Requested for", "requested_for", "caller"),
        ("Item", "cat_item", "cat-item"),
        ("State", "state", "state"),
        ("Assignment group", "assignment_group", "assignment-group"),
        ("Assigned to", "assigned_to", "assigned-to"),
        ("Short description", "short_description", "short-description"),
    ),
}
REQUESTER_FIELD = {"incident": "caller_id", "sc_req_item": "requested_for"}


def esc(text):
    return html.escape(text or "", quote=True)


def page(title, body):
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>"
            "<style>%s</style></head><body>%s%s</body></html>\n") % (esc(title), STYLE, BRAND,
                                                                   body)


def shown(inst, table, rec, field):
    """Display value of a field ("" when the table lacks it)."""
    tdef = inst.schema[table]
    fdef = tdef.field(field)
    if fdef is None:
        return ""
    return inst.display_value(tdef, fdef, rec, rec.get(field, ""))


def ticket_list(inst):
    rows = []
    for table in TICKET_TABLES:
        for rec in reversed(inst.store.rows(table)):
            rows.append(
                '<tr><td><a href="/%s.do?sys_id=%s">%s</a></td><td>%s</td><td>%s</td>'
                "<td>%s</td><td>%s</td><td>%s</td></tr>" % (
                    table, esc(rec["sys_id"]), esc(rec.get("number")),
                    esc(inst.schema[table].label), esc(rec.get("short_description")),
                    esc(shown(inst, table, rec, REQUESTER_FIELD[table])),
                    esc(shown(inst, table, rec, "state")), esc(rec.get("sys_updated_on"))))
    body = ("<h1>Tickets</h1><table id=\"tickets\"><tr><th>Number</th><th>Type</th>"
            "<th>Short description</th><th>Requester</th><th>State</th><th>Updated</th>"
            "</tr>%s</table>" % "".join(rows))
    return page("Tickets", body)


def journal_block(inst, table, rec, element, element_id):
    entries = []
    for e in reversed(inst.journal_entries(table, rec["sys_id"], element)):
        entries.append(
            '<div class="journal-entry"><div class="journal-meta">%s - %s</div>'
            '<div class="journal-text">%s</div></div>' % (
                esc(e["sys_created_on"]), esc(inst.user_display(e["sys_created_by"])),
                esc(e["value"])))
    return '<div id="%s">%s</div>' % (element_id, "".join(entries))


def verification_block(inst, table, rec):
    fdef = inst.schema[table].field(VERIFICATION_FIELD)
    if fdef is None:
        return '<div id="imperai-verification" class="missing">(no %s field on %s)</div>' % (
            VERIFICATION_FIELD, table)
    # Stored values are sanitized on write; sanitizing again costs nothing
    # and keeps the page safe whatever reached the data directory.
    return '<div id="imperai-verification" class="html-field">%s</div>' % sanitize(
        rec.get(VERIFICATION_FIELD, ""))


def ticket_form(inst, table, rec):
    rows = "".join('<tr><th>%s</th><td id="%s">%s</td></tr>' % (
        esc(label), ident, esc(shown(inst, table, rec, field)))
        for label, field, ident in FORM_FIELDS[table])
    label = (inst.schema[table].field(VERIFICATION_FIELD) or None)
    body = (
        '<p><a href="/">All tickets</a></p>'
        '<h1><span id="table">%s</span> <span id="number">%s</span></h1>'
        '<table class="form">%s</table>'
        "<h2>%s</h2>%s"
        "<h2>Work notes</h2>%s"
        "<h2>Additional comments</h2>%s" % (
            esc(inst.schema[table].label), esc(rec.get("number")), rows,
            esc(label.label if label else "imper.ai Verification"),
            verification_block(inst, table, rec),
            journal_block(inst, table, rec, "work_notes", "work-notes"),
            journal_block(inst, table, rec, "comments", "comments")))
    return page("%s %s" % (rec.get("number", ""), rec.get("short_description", "")), body)
