"""Table API semantics of the ServiceNow simulator, without HTTP.

Reading: encoded query, sort, offset/limit, then row ACLs (in that order,
as ServiceNow does: a page can come back short), and rendering with
references, display values and dot-walked fields, every value a string.

Writing: field coercion (unknown and sys_* fields ignored, HTML
sanitized, journal fields appended to sys_journal_field), incident state
rules and the close-fields data policy, sys_mod_count/sys_updated_on only
on a real change, and a log of every applied write for the control API.
"""

import hashlib
import json
import random
import re

import snow_query
from simcommon import fmt_time, real_ms
from snow_html import sanitize
from snow_store import new_sys_id, stamp

SYS_ID_RE = re.compile(r"^[0-9a-f]{32}$")
JOURNAL_LABELS = {"work_notes": "Work notes", "comments": "Additional comments"}
CLOSE_FIELDS = ("close_code", "close_notes")

DEFAULT_SETTINGS = {
    "unknown_field_mode": "ignore",   # or "empty": an invalid query returns no rows
    "client_credentials": False,      # OAuth client_credentials grant (off by default, as shipped)
    "token_ttl": 1800,                # access token lifetime, seconds
    "refresh_ttl": 100 * 86400,       # refresh token lifetime
    "acl_hide_rate": 0.0,             # share of rows a non-admin may not read
    "row_acl": True,                  # apply the seed's per-user row ACL queries
    "bump_on_noop": False,            # a PATCH that changes nothing still bumps sys_mod_count
    "unordered": "insertion",         # or "shuffle": rows without ORDERBY come in random order
    "session_timeout": 1800,          # idle seconds before a server session expires
    "commit_lag": 0,                  # seconds people's writes stay invisible after sys_updated_on
    "field_acl": {},                  # user -> ["table.field", ...] that read as "" for that user
    "reference_input": "lookup",      # or "as_given": a reference written by name is stored as is
}


def error_body(message, detail):
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


NOT_FOUND = error_body("No Record found",
                       "Record doesn't exist or ACL restricts the record retrieval")
NO_ROWS_V1 = error_body("No Record found",
                        "Records matching query not found. Check query parameter or offset parameter")


def to_str(value):
    """JSON value -> the string ServiceNow would store."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict) and "value" in value:
        return to_str(value["value"])
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def to_bool(text):
    return "true" if text.strip().lower() in ("true", "1", "yes") else "false"


class RenderOpts:
    """sysparm_fields / sysparm_display_value / sysparm_exclude_reference_link."""

    def __init__(self, fields=None, display="false", exclude_links=False, hidden=()):
        self.fields = fields
        self.display = display if display in ("true", "all") else "false"
        self.exclude_links = exclude_links
        self.hidden = frozenset(hidden)  # "table.field" the reader may not read

    @classmethod
    def from_params(cls, params):
        raw = params.get("sysparm_fields", "")
        fields = [f.strip() for f in raw.split(",") if f.strip()] or None
        display = params.get("sysparm_display_value", "false").lower()
        exclude = params.get("sysparm_exclude_reference_link", "false").lower() == "true"
        return cls(fields, display, exclude)


class SnowInstance:
    """One simulated instance: the store plus the rules around it.

    Callers hold store.lock around every call (records change under
    concurrent requests); the methods themselves do not lock."""

    def __init__(self, store, clock, settings, base_url, row_acl=None):
        self.store = store
        self.schema = store.schema
        self.clock = clock
        self.settings = settings
        self.base_url = base_url
        self.row_acl = row_acl or {}
        self._choices = None
        self._pending = {}  # (table, sys_id) -> (visible at, version visible until then or None)

    # ------------------------------------------------------------ users & ACLs

    def roles(self, user_name):
        return set(self.store.auth.get(user_name, {}).get("roles", ()))

    def can_write(self, user_name, table):
        roles = self.roles(user_name)
        return "admin" in roles or self.schema[table].write_role in roles

    def visible(self, user_name, table, rec):
        """Row ACL: a seed query the row must match, and/or a fixed share of
        rows hidden (decided by a hash, so the same rows stay hidden)."""
        if "admin" in self.roles(user_name):
            return True
        rule = self.row_acl.get(user_name, {}).get(table)
        if rule and self.settings["row_acl"]:
            pred = snow_query.compile_query(snow_query.parse(rule), *self._accessors(table))
            if pred is snow_query.NO_ROWS or not pred(rec):
                return False
        rate = self.settings["acl_hide_rate"]
        if rate > 0:
            digest = hashlib.md5(("%s:%s" % (user_name, rec["sys_id"])).encode()).hexdigest()
            return int(digest[:8], 16) / 2.0 ** 32 >= rate
        return True

    def hidden_fields(self, user_name):
        """Field ACL: the "table.field" names that read as "" for this user."""
        return self.settings["field_acl"].get(user_name, ())

    def user_sys_id(self, user_name):
        rec = self.store.user_by_name(user_name)
        return rec["sys_id"] if rec else ""

    def user_display(self, user_name):
        rec = self.store.user_by_name(user_name)
        return rec.get("name") or user_name if rec else user_name

    # ------------------------------------------------------------ field access

    def resolve(self, table, rec, path):
        """(table def, field def, record holding it, raw value) for a field
        path, following references for dot-walks; None if unknown."""
        tdef, cur = self.schema[table], rec
        parts = path.split(".")
        for i, part in enumerate(parts):
            fdef = tdef.field(part)
            if fdef is None:
                return None
            raw = cur.get(part, "") if cur is not None else ""
            if fdef.type == "journal_input":
                raw = ""  # journal fields are not stored on the record
            if i == len(parts) - 1:
                return tdef, fdef, cur, raw
            if fdef.type != "reference" or fdef.ref not in self.schema:
                return None
            tdef = self.schema[fdef.ref]
            cur = self.store.get(fdef.ref, raw) if raw else None
        return None

    def _accessors(self, table):
        def field_type(path):
            found = self.resolve(table, {}, path)
            return found[1].type if found else None

        fields = self.schema[table].fields

        def value_of(rec, path):
            fdef = fields.get(path)
            if fdef is not None:  # plain field: the hot path of every poll
                return "" if fdef.type == "journal_input" else rec.get(path, "")
            found = self.resolve(table, rec, path)
            return found[3] if found else ""
        return field_type, value_of

    # ------------------------------------------------------------ display values

    def choice_label(self, table, element, value):
        if self._choices is None:
            self._choices = {(c["name"], c["element"], c["value"]): c["label"]
                             for c in self.store.rows("sys_choice")}
        return self._choices.get((table, element, value), value)

    def journal_entries(self, table, sys_id, element=None):
        return [e for e in self.store.journal_for(sys_id)
                if e.get("name") == table and (element is None or e["element"] == element)]

    def journal_history(self, table, sys_id, element):
        """Newest first: '<date> - <user name> (Work notes)\\n<text>\\n\\n'."""
        label = JOURNAL_LABELS.get(element, element)
        return "".join("%s - %s (%s)\n%s\n\n" % (e["sys_created_on"],
                                                 self.user_display(e["sys_created_by"]),
                                                 label, e["value"])
                       for e in reversed(self.journal_entries(table, sys_id, element)))

    def display_value(self, tdef, fdef, rec, raw):
        if fdef.type == "journal_input":
            return self.journal_history(tdef.name, rec["sys_id"], fdef.name) if rec else ""
        if fdef.type == "reference":
            if not raw:
                return ""
            target_def = self.schema.get(fdef.ref)
            target = self.store.get(fdef.ref, raw) if target_def else None
            return target.get(target_def.display, "") if target else ""
        return self.choice_label(tdef.name, fdef.name, raw) if raw else raw

    # ------------------------------------------------------------ rendering

    def render(self, table, rec, opts):
        names = opts.fields or list(self.schema[table].fields)
        out = {}
        for name in names:
            found = self.resolve(table, rec, name)
            if found is not None:  # unknown names in sysparm_fields are ignored
                out[name] = self._render_value(found, opts)
        return out

    def _render_value(self, found, opts):
        tdef, fdef, rec, raw = found
        if opts.hidden and "%s.%s" % (tdef.name, fdef.name) in opts.hidden:
            # A field the reader may not read comes back empty, not absent.
            return {"display_value": "", "value": ""} if opts.display == "all" else ""
        link = None
        if fdef.type == "reference" and raw and not opts.exclude_links:
            link = "%s/api/now/table/%s/%s" % (self.base_url, fdef.ref, raw)
        if opts.display == "false":
            return {"link": link, "value": raw} if link else raw
        shown = self.display_value(tdef, fdef, rec, raw)
        if opts.display == "true":
            return {"display_value": shown, "link": link} if link else shown
        both = {"display_value": shown, "value": raw}
        if link:
            both["link"] = link
        return both

    # ------------------------------------------------------------ reading

    def query(self, table, user_name, text, offset, limit):
        """(visible rows of the page, total matching rows)."""
        field_type, value_of = self._accessors(table)
        q = snow_query.parse(text)
        pred = snow_query.compile_query(q, field_type, value_of,
                                        self.settings["unknown_field_mode"])
        rows = [] if pred is snow_query.NO_ROWS else [
            r for r in self.committed_rows(table) if pred(r)]
        if q.order:
            snow_query.sort_rows(rows, q.order, field_type, value_of)
        elif self.settings["unordered"] == "shuffle":
            random.shuffle(rows)
        page = rows[offset:offset + limit]
        # The limit is applied before ACLs, so a page may come back short.
        return [r for r in page if self.visible(user_name, table, r)], len(rows)

    def get(self, table, user_name, sys_id, latest=False):
        """The record as this user may read it; latest: the newest version
        (a write waits for a lagging transaction, then applies on top)."""
        rec = self.store.get(table, sys_id)
        if rec is None or not self.visible(user_name, table, rec):
            return None
        seen = self.committed(table, rec)
        return rec if latest and seen is not None else seen

    # ------------------------------------------------------------ commit lag

    def committed(self, table, rec):
        """The version other sessions see: a write under commit lag shows
        its previous version (None for a new row) until it commits."""
        if not self._pending:
            return rec
        key = (table, rec["sys_id"])
        entry = self._pending.get(key)
        if entry is None:
            return rec
        if self.clock.now() >= entry[0]:
            del self._pending[key]
            return rec
        return entry[1]

    def committed_rows(self, table):
        rows = self.store.rows(table)
        if not self._pending:
            return rows
        return [v for v in (self.committed(table, r) for r in rows) if v is not None]

    def _lag(self, table, existing, new, lagged):
        """Remember the version visible while this write's commit lags."""
        key = (table, new["sys_id"])
        if not lagged or not self.settings["commit_lag"]:
            self._pending.pop(key, None)  # it waited for the lagging one: all visible now
            return
        before = self._pending.get(key, (0, dict(existing) if existing else None))[1]
        self._pending[key] = (self.clock.now() + self.settings["commit_lag"], before)

    # ------------------------------------------------------------ writing

    def write(self, table, user_name, method, body, existing=None, commit=True,
              lookup=True, lagged=False):
        """Apply a POST (existing None) or PATCH/PUT.  Returns (status,
        record or error body); durable before returning unless commit is
        False (the caller then commits a batch).  lookup: a reference
        given by name is looked up; lagged: the write is a person's, subject
        to commit_lag."""
        tdef = self.schema[table]
        changes, journal = self._coerce(tdef, body, lookup)
        old = existing or {}
        new = dict(existing) if existing else self._blank(tdef, user_name)
        new.update(changes)
        self._derive(tdef, old, new, changes, user_name)
        problem = self._data_policy(tdef, new)
        if problem:
            return 403, error_body("Operation Failed", problem)
        changed = {k: v for k, v in new.items()
                   if not k.startswith(("sys_", "_")) and old.get(k, "") != v}
        if existing and not changed and not journal and not self.settings["bump_on_noop"]:
            return 200, existing  # nothing to update: ServiceNow skips the update
        self._apply_write(tdef, user_name, method, existing, new, changed, journal)
        self._lag(tdef.name, existing, new, lagged)
        if tdef.name == "sys_dictionary" and not existing:
            self._add_column(new)
        if commit:
            self.store.commit()
        return (200 if existing else 201), new

    def _apply_write(self, tdef, user_name, method, existing, new, changed, journal):
        now = self.clock.now()
        if existing:
            new["sys_mod_count"] = str(int(existing.get("sys_mod_count") or 0) + 1)
            new["sys_updated_on"] = fmt_time(now)
            new["sys_updated_by"] = user_name
        else:
            stamp(new, user_name, now)
            if tdef.prefix and not new.get("number"):
                new["number"] = changed["number"] = self.store.next_number(tdef.name)
        self.store.put(tdef.name, new)
        for element, text in journal:
            self._append_journal(tdef.name, new["sys_id"], element, text, user_name, now)
            changed[element] = text
        self.store.add_write({
            "table": tdef.name, "sys_id": new["sys_id"], "number": new.get("number", ""),
            "method": method, "fields": changed, "at_ms": real_ms(), "user": user_name,
            "mod_count": int(new["sys_mod_count"]),
        })
        if tdef.name == "sys_choice":
            self._choices = None

    def _add_column(self, row):
        """An inserted dictionary entry creates the column, as on a real
        instance: later writes to it stick."""
        if row.get("name") in self.schema and row.get("element"):
            self.store.add_field(row["name"], row["element"], row.get("internal_type") or "string",
                                 row.get("column_label") or row["element"])

    def _append_journal(self, table, sys_id, element, text, user_name, now):
        row = {"element": element, "element_id": sys_id, "name": table, "value": text,
               "_created_ms": real_ms()}
        self.store.put("sys_journal_field", stamp(row, user_name, now))

    def delete(self, table, user_name, rec):
        self.store.delete(table, rec["sys_id"])
        self.store.add_write({
            "table": table, "sys_id": rec["sys_id"], "number": rec.get("number", ""),
            "method": "DELETE", "fields": {}, "at_ms": real_ms(), "user": user_name,
            "mod_count": int(rec.get("sys_mod_count") or 0),
        })
        if table == "sys_choice":
            self._choices = None
        self.store.commit()

    def _blank(self, tdef, user_name):
        rec = {name: "" for name, f in tdef.fields.items() if f.type != "journal_input"}
        rec.update(tdef.defaults)
        if "opened_at" in rec:
            rec["opened_at"] = fmt_time(self.clock.now())
        if "opened_by" in rec:
            rec["opened_by"] = self.user_sys_id(user_name)
        return rec

    def _coerce(self, tdef, body, lookup=True):
        """Body -> (field changes, journal entries).  Unknown, read-only
        (sys_*) and empty journal values are dropped without an error."""
        changes, journal = {}, []
        for name, value in body.items():
            fdef = tdef.field(name)
            if fdef is None or name.startswith("sys_"):
                continue
            text = to_str(value)
            if fdef.type == "journal_input":
                if text.strip():
                    journal.append((name, text))
                continue
            if fdef.type == "html":
                text = sanitize(text)
            elif fdef.type == "reference" and lookup:
                text = self._reference_value(fdef.ref, text)
            elif fdef.type == "boolean":
                text = to_bool(text)
            changes[name] = text
        return changes, journal

    def _reference_value(self, ref_table, text):
        """A sys_id is stored as is; a display value (or user_name) is
        looked up, as ServiceNow does when a name is written."""
        if not text or SYS_ID_RE.match(text) or ref_table not in self.schema:
            return text
        display = self.schema[ref_table].display
        for rec in self.store.rows(ref_table):
            if rec.get(display) == text or rec.get("user_name") == text:
                return rec["sys_id"]
        return text

    def _derive(self, tdef, old, new, changes, user_name):
        """Business rules: incident_state mirrors state, active follows the
        state, resolution and closure stamps."""
        if "state" not in new:
            return
        if tdef.name == "incident":
            if "incident_state" in changes and "state" not in changes:
                new["state"] = new["incident_state"]
            else:
                new["incident_state"] = new["state"]
        if tdef.inactive_states:
            new["active"] = "false" if new["state"] in tdef.inactive_states else "true"
        entering = new["state"] != old.get("state")
        if not entering:
            return
        now, who = fmt_time(self.clock.now()), self.user_sys_id(user_name)
        if tdef.name == "incident" and new["state"] in ("6", "7") and not new.get("resolved_at"):
            new["resolved_at"], new["resolved_by"] = now, who
        if new["state"] in tdef.inactive_states and "closed_at" in new and not new["closed_at"]:
            new["closed_at"] = now
            if "closed_by" in new:
                new["closed_by"] = who

    def _data_policy(self, tdef, new):
        """The base incident data policy: Resolved/Closed need close fields."""
        if tdef.name != "incident" or new.get("state") not in ("6", "7"):
            return None
        missing = [tdef.field(f).label for f in CLOSE_FIELDS
                   if tdef.field(f) and not new.get(f, "").strip()]
        if not missing:
            return None
        verb = "is" if len(missing) == 1 else "are"
        return "Data Policy Exception: \n %s %s mandatory" % (", ".join(missing), verb)

    # ------------------------------------------------------------ bulk (control API)

    def create_tickets(self, table, count, fields, caller):
        """count POSTs as `caller` (default admin) in one durable
        transaction, so benchmarks can create thousands at once."""
        tdef = self.schema[table]
        body = dict(fields)
        for ref_field in ("caller_id", "requested_for"):
            if caller and ref_field in tdef.fields:
                body.setdefault(ref_field, caller)
        status, created = 201, []
        for _ in range(count):
            status, rec = self.write(table, caller or "admin", "POST", body, commit=False,
                                     lagged=True)
            if status != 201:
                break  # e.g. the close-fields data policy: same for every copy
            created.append({"number": rec.get("number", ""), "sys_id": rec["sys_id"]})
        self.store.commit()
        return (status, created) if status == 201 else (status, rec)
