"""Schema and durable state of the ServiceNow simulator.

The schema (tables, fields, types, labels, number prefixes) comes from the
seed file at every start; the data from the seed only into a fresh data
directory.  State lives in DIR/state.json (a snapshot written atomically:
temp + fsync + rename) plus DIR/wal.jsonl, a log of the transactions
committed since that snapshot.  Every transaction is appended and fsynced
before the client gets its answer, so a crash (even SIGKILL) loses nothing
that was answered; the log is folded into a new snapshot when it grows
past the snapshot's size and on a clean stop.
"""

import hashlib
import json
import os
import threading
import uuid
from collections import OrderedDict, defaultdict

from simcommon import atomic_write_json, fmt_time

SYSTEM_FIELDS = (
    ("sys_id", "GUID", "Sys ID"),
    ("sys_created_on", "glide_date_time", "Created"),
    ("sys_created_by", "string", "Created by"),
    ("sys_updated_on", "glide_date_time", "Updated"),
    ("sys_updated_by", "string", "Updated by"),
    ("sys_mod_count", "integer", "Updates"),
)
# Rebuilt from the schema at every start, never persisted: it describes
# the schema the simulator runs with (e.g. --no-verification-field).
DERIVED_TABLES = frozenset(("sys_dictionary",))
VERIFICATION_FIELD = "u_imperai_verification"
FIRST_NUMBER = 10001


def new_sys_id():
    return uuid.uuid4().hex


def stable_sys_id(*parts):
    """Seeded rows get the same sys_id in every fresh directory."""
    return hashlib.md5(":".join(parts).encode()).hexdigest()


class FieldDef:
    __slots__ = ("name", "type", "label", "ref")

    def __init__(self, name, ftype, label, ref=None):
        self.name, self.type, self.label, self.ref = name, ftype, label, ref


class TableDef:
    """One table: fields in display order (system fields last), the number
    prefix, the display field for references, the role writes need."""

    def __init__(self, name, spec):
        self.name = name
        self.prefix = spec.get("prefix")
        self.display = spec.get("display", "name")
        self.write_role = spec.get("write_role", "admin")
        self.defaults = dict(spec.get("defaults", {}))
        self.inactive_states = frozenset(spec.get("inactive_states", ()))
        self.label = spec.get("label", name)
        self.fields = OrderedDict()
        for fname, fspec in spec.get("fields", {}).items():
            self.fields[fname] = FieldDef(fname, *fspec)
        for fname, ftype, label in SYSTEM_FIELDS:
            self.fields[fname] = FieldDef(fname, ftype, label)

    def field(self, name):
        return self.fields.get(name)


def build_schema(seed, verification_field=True):
    schema = OrderedDict((n, TableDef(n, s)) for n, s in seed["tables"].items())
    if not verification_field and "incident" in schema:
        schema["incident"].fields.pop(VERIFICATION_FIELD, None)
    return schema


def dictionary_rows(schema, now):
    """sys_dictionary as the schema says: one collection row per table,
    one row per field with internal_type and column_label."""
    rows = []
    for table in schema.values():
        rows.append({"name": table.name, "element": "", "internal_type": "collection",
                     "column_label": table.label, "reference": "", "active": "true"})
        for f in table.fields.values():
            rows.append({"name": table.name, "element": f.name, "internal_type": f.type,
                         "column_label": f.label, "reference": f.ref or "",
                         "active": "true"})
    for row in rows:
        stamp(row, "system", now, stable_sys_id("sys_dictionary", row["name"], row["element"]))
    return rows


def stamp(rec, user, now, sys_id=None):
    """System fields of a newly inserted record."""
    ts = fmt_time(now)
    rec["sys_id"] = sys_id or rec.get("sys_id") or new_sys_id()
    rec["sys_created_on"] = rec["sys_updated_on"] = ts
    rec["sys_created_by"] = rec["sys_updated_by"] = user
    rec["sys_mod_count"] = "0"
    return rec


class Store:
    """Tables of records (dicts of strings) guarded by one lock.

    Mutators queue write-ahead entries; commit() appends them as one line
    and fsyncs.  Callers hold `lock` around a whole read-modify-commit."""

    def __init__(self, data_dir, schema, durable=True):
        self.lock = threading.RLock()
        self.dir = data_dir
        self.schema = schema
        self.durable = durable
        self.tables = {name: OrderedDict() for name in schema}
        self.counters = {}
        self.writes = []
        self.auth = {}
        self.added_fields = []  # [table, name, type, label]: sys_dictionary inserts
        self.seq = 0
        self._pending = []
        self._journal = defaultdict(list)   # element_id -> journal rows, oldest first
        self._wal = None
        self._wal_bytes = 0
        self._snap_bytes = 0

    # ------------------------------------------------------------ paths

    @property
    def snapshot_path(self):
        return os.path.join(self.dir, "state.json")

    @property
    def wal_path(self):
        return os.path.join(self.dir, "wal.jsonl")

    # ------------------------------------------------------------ reads

    def get(self, table, sys_id):
        return self.tables.get(table, {}).get(sys_id)

    def rows(self, table):
        return list(self.tables.get(table, {}).values())

    def journal_for(self, sys_id):
        return list(self._journal.get(sys_id, ()))

    def user_by_name(self, user_name):
        for rec in self.tables.get("sys_user", {}).values():
            if rec.get("user_name") == user_name:
                return rec
        return None

    # ------------------------------------------------------------ mutation

    def put(self, table, rec):
        self._apply_put(table, rec)
        self._pending.append(["put", table, rec])

    def delete(self, table, sys_id):
        self._apply_del(table, sys_id)
        self._pending.append(["del", table, sys_id])

    def next_number(self, table):
        prefix = self.schema[table].prefix
        n = self.counters.get(table, FIRST_NUMBER)
        self.counters[table] = n + 1
        self._pending.append(["ctr", table, n + 1])
        return "%s%07d" % (prefix, n)

    def add_write(self, entry):
        self.writes.append(entry)
        self._pending.append(["write", entry])

    def set_auth(self, user_name, entry):
        self.auth[user_name] = entry
        self._pending.append(["auth", user_name, entry])

    def add_field(self, table, name, ftype, label):
        """A column created through sys_dictionary: part of the schema
        from now on, and after a restart."""
        self._apply_field([table, name, ftype, label])
        self._pending.append(["field", table, name, ftype, label])

    def _apply_field(self, spec):
        table, name, ftype, label = spec
        tdef = self.schema.get(table)
        if tdef is None or name in tdef.fields:
            return
        tdef.fields[name] = FieldDef(name, ftype, label)
        tdef.fields.move_to_end(name, last=True)
        for sysf, _, _ in SYSTEM_FIELDS:  # system fields stay last
            tdef.fields.move_to_end(sysf, last=True)
        self.added_fields.append(list(spec))

    def _apply_put(self, table, rec):
        rows = self.tables.setdefault(table, OrderedDict())
        if table == "sys_journal_field" and rec["sys_id"] not in rows:
            self._journal[rec.get("element_id", "")].append(rec)
        rows[rec["sys_id"]] = rec

    def _apply_del(self, table, sys_id):
        old = self.tables.get(table, {}).pop(sys_id, None)
        if old is not None and table == "sys_journal_field":
            entries = self._journal.get(old.get("element_id", ""), [])
            entries[:] = [e for e in entries if e["sys_id"] != sys_id]

    def _apply(self, op):
        kind = op[0]
        if kind == "put":
            self._apply_put(op[1], op[2])
        elif kind == "del":
            self._apply_del(op[1], op[2])
        elif kind == "ctr":
            self.counters[op[1]] = op[2]
        elif kind == "write":
            self.writes.append(op[1])
        elif kind == "auth":
            self.auth[op[1]] = op[2]
        elif kind == "field":
            self._apply_field(op[1:])

    # ------------------------------------------------------------ durability

    def commit(self):
        """Make the queued changes durable: one WAL line, flushed, fsynced."""
        ops = [op for op in self._pending if not (op[0] in ("put", "del")
                                                 and op[1] in DERIVED_TABLES)]
        self._pending = []
        if not ops:
            return
        self.seq += 1
        line = json.dumps({"seq": self.seq, "ops": ops}, separators=(",", ":")) + "\n"
        data = line.encode()
        self._wal.write(data)
        self._wal.flush()
        if self.durable:
            os.fsync(self._wal.fileno())
        self._wal_bytes += len(data)
        if self._wal_bytes > max(4 << 20, self._snap_bytes):
            self.snapshot()

    def snapshot(self):
        """Fold everything into state.json, then empty the log.  The seq
        in the snapshot lets a crash between the two skip replayed lines."""
        state = {
            "seq": self.seq,
            "tables": {t: list(rows.values()) for t, rows in self.tables.items()
                       if t not in DERIVED_TABLES},
            "counters": self.counters,
            "writes": self.writes,
            "auth": self.auth,
            "fields": self.added_fields,
        }
        atomic_write_json(self.snapshot_path, state, self.durable)
        self._snap_bytes = os.path.getsize(self.snapshot_path)
        if self._wal:
            self._wal.close()
        self._wal = open(self.wal_path, "wb")
        if self.durable:
            os.fsync(self._wal.fileno())
        self._wal_bytes = 0

    def open(self, seed, now):
        """Load DIR (snapshot + log) or seed a fresh one; derived tables are
        rebuilt either way."""
        os.makedirs(self.dir, exist_ok=True)
        with self.lock:
            if os.path.exists(self.snapshot_path):
                self._load()
            else:
                self._seed(seed, now)
            for row in dictionary_rows(self.schema, now):
                self._apply_put("sys_dictionary", row)
            self.snapshot()

    def close(self):
        with self.lock:
            self.snapshot()
            self._wal.close()

    def _load(self):
        with open(self.snapshot_path, "rb") as f:
            state = json.load(f)
        self.seq = state.get("seq", 0)
        for table, rows in state.get("tables", {}).items():
            for rec in rows:
                self._apply_put(table, rec)
        self.counters = state.get("counters", {})
        self.writes = state.get("writes", [])
        self.auth = state.get("auth", {})
        for spec in state.get("fields", []):
            self._apply_field(spec)
        self._replay()

    def _replay(self):
        if not os.path.exists(self.wal_path):
            return
        with open(self.wal_path, "rb") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    break  # a torn last line: that transaction was never answered
                if entry["seq"] <= self.seq:
                    continue
                for op in entry["ops"]:
                    self._apply(op)
                self.seq = entry["seq"]

    # ------------------------------------------------------------ seeding

    def _seed(self, seed, now):
        for user in seed.get("users", []):
            rec = {k: v for k, v in user.items() if k not in ("password", "roles")}
            self._seed_row("sys_user", rec, now, stable_sys_id("sys_user", user["user_name"]))
            self.auth[user["user_name"]] = {"password": user.get("password", ""),
                                            "roles": list(user.get("roles", []))}
        self._seed_roles(seed, now)
        for table, rows in seed.get("records", {}).items():
            for row in rows:
                key = row.get("sys_id") or stable_sys_id(table, json.dumps(row, sort_keys=True))
                self._seed_row(table, dict(row), now, key)
        for element, choices in seed.get("choices", {}).items():
            self._seed_choices(element, choices, now)
        for name, table in self.schema.items():
            if table.prefix:
                self.counters[name] = FIRST_NUMBER

    def _seed_row(self, table, rec, now, sys_id):
        tdef = self.schema[table]
        full = {name: "" for name in tdef.fields}
        full.update(tdef.defaults)
        full.update({k: str(v) for k, v in rec.items() if k in tdef.fields})
        self._apply_put(table, stamp(full, "system", now, sys_id))

    def _seed_roles(self, seed, now):
        """sys_user_role and sys_user_has_role as the users' roles say (the
        roles that authorise requests stay in `auth`)."""
        if "sys_user_has_role" not in self.schema:
            return
        for user in seed.get("users", []):
            for role in user.get("roles", []):
                role_id = stable_sys_id("sys_user_role", role)
                if role_id not in self.tables["sys_user_role"]:
                    self._seed_row("sys_user_role", {"name": role}, now, role_id)
                self._seed_row("sys_user_has_role", {
                    "user": stable_sys_id("sys_user", user["user_name"]), "role": role_id},
                    now, stable_sys_id("sys_user_has_role", user["user_name"], role))

    def _seed_choices(self, element, choices, now):
        """choices: {"incident.category": [[value, label, dependent_value?], ...]}"""
        table, _, field = element.partition(".")
        for seq, choice in enumerate(choices):
            value, label = choice[0], choice[1]
            dependent = choice[2] if len(choice) > 2 else ""
            row = {"name": table, "element": field, "value": value, "label": label,
                   "dependent_value": dependent, "sequence": str((seq + 1) * 10),
                   "inactive": "false", "language": "en"}
            self._seed_row("sys_choice", row, now, stable_sys_id("sys_choice", table, field, value))
