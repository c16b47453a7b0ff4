"""ServiceNow encoded queries: parse, evaluate, sort.

Grammar (as documented for sysparm_query):
    query  := group ("^NQ" group)*          top-level OR of groups
    group  := clause ("^" clause)*          AND
    clause := term ("^OR" term)*            OR binds to the previous term
    term   := field op value | ORDERBY field | ORDERBYDESC field | EQ

so A^B^ORC is A AND (B OR C).  "^^" is a literal caret in a value.
Field names are lower-case (dot-walk allowed), operators upper-case or
symbols, and names and values compare case-sensitively.

The module knows nothing about tables: the caller passes field_type(path)
(None for an unknown field) and value_of(record, path) (raw string).
"""

import re

NUMERIC_TYPES = frozenset(("integer", "decimal", "float", "longint", "numeric"))

# Longest first, so "NOT LIKE" wins over a shorter prefix.
OPERATORS = (
    "ISNOTEMPTY", "ISEMPTY", "EMPTYSTRING", "ANYTHING", "NOT LIKE", "NOT IN",
    "STARTSWITH", "ENDSWITH", "BETWEEN", "LIKE", "IN",
    "!=", "<=", ">=", "=", "<", ">",
)
NO_VALUE_OPS = frozenset(("ISNOTEMPTY", "ISEMPTY", "EMPTYSTRING", "ANYTHING"))

FIELD_RE = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")
DATEGEN_RE = re.compile(
    r"javascript:gs\.dateGenerate\(\s*'([0-9-]+)'\s*,\s*'([^']*)'\s*\)")

NO_ROWS = object()  # compile result when an invalid query must return nothing


class Term:
    __slots__ = ("field", "op", "value")

    def __init__(self, field, op, value):
        self.field, self.op, self.value = field, op, value

    def __repr__(self):
        return "Term(%r, %r, %r)" % (self.field, self.op, self.value)


class Query:
    """groups: [[clause, ...], ...] with clause = [Term, ...] (OR-ed);
    order: [(field, descending), ...]; invalid: terms that did not parse."""

    def __init__(self):
        self.groups = [[]]
        self.order = []
        self.invalid = []


def split_carets(text):
    """Split on '^' but keep '^^' as a literal caret."""
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "^" and text[i + 1:i + 2] == "^":
            cur.append("^")
            i += 2
            continue
        if ch == "^":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def parse_term(text):
    """Term or None when the text is not field+operator+value."""
    m = FIELD_RE.match(text)
    if not m:
        return None
    rest = text[m.end():]
    for op in OPERATORS:
        if rest.startswith(op):
            value = rest[len(op):]
            if op in NO_VALUE_OPS and value:
                return None
            return Term(m.group(0), op, normalize_value(value))
    return None


def normalize_value(value):
    """Accept the one script form date filters commonly carry."""
    def repl(m):
        day, clock = m.group(1), m.group(2)
        clock = {"start": "00:00:00", "end": "23:59:59"}.get(clock, clock)
        return "%s %s" % (day, clock)
    return DATEGEN_RE.sub(repl, value)


def parse(text):
    q = Query()
    for token in split_carets(text or ""):
        if token.startswith("NQ"):
            q.groups.append([])
            token = token[2:]
        if not token or token == "EQ":
            continue
        if token.startswith("ORDERBYDESC"):
            q.order.append((token[len("ORDERBYDESC"):], True))
            continue
        if token.startswith("ORDERBY"):
            q.order.append((token[len("ORDERBY"):], False))
            continue
        is_or = token.startswith("OR")
        term = parse_term(token[2:] if is_or else token)
        if term is None:
            q.invalid.append(token)
            continue
        group = q.groups[-1]
        if is_or and group:
            group[-1].append(term)
        else:
            group.append([term])
    return q


# ---------------------------------------------------------------- evaluation

def _num(value):
    try:
        return float(value)
    except ValueError:
        return None


def _compare(a, b, numeric):
    """-1/0/1 comparing a record value with a query value."""
    if numeric:
        x, y = _num(a), _num(b)
        if x is not None and y is not None:
            return (x > y) - (x < y)
    return (a > b) - (a < b)


def _ordered(accept):
    """An ordering test; an empty value is NULL to SQL, so none holds."""
    return lambda a, v, numeric: a != "" and accept(_compare(a, v, numeric))


def _between(a, v, numeric):
    lo, _, hi = v.partition("@")
    return a != "" and _compare(a, lo, numeric) >= 0 and _compare(a, hi, numeric) <= 0


def _equal(a, v, numeric):
    return _compare(a, v, numeric) == 0 if a and v else a == v


# op -> test(record value, query value, numeric field?)
OP_TESTS = {
    "=": _equal,
    "!=": lambda a, v, n: not _equal(a, v, n),
    "<": _ordered(lambda c: c < 0),
    "<=": _ordered(lambda c: c <= 0),
    ">": _ordered(lambda c: c > 0),
    ">=": _ordered(lambda c: c >= 0),
    "IN": lambda a, v, n: a in v,       # v prepared as a set
    "NOT IN": lambda a, v, n: a not in v,
    "LIKE": lambda a, v, n: v in a,
    "NOT LIKE": lambda a, v, n: v not in a,
    "STARTSWITH": lambda a, v, n: a.startswith(v),
    "ENDSWITH": lambda a, v, n: a.endswith(v),
    "ISEMPTY": lambda a, v, n: a == "",
    "EMPTYSTRING": lambda a, v, n: a == "",
    "ISNOTEMPTY": lambda a, v, n: a != "",
    "BETWEEN": _between,
    "ANYTHING": lambda a, v, n: True,
}


def _term_test(term, numeric, value_of):
    test, field, v = OP_TESTS[term.op], term.field, term.value
    if term.op in ("IN", "NOT IN"):
        v = frozenset(v.split(","))
    return lambda rec: test(value_of(rec, field), v, numeric)


def _any(tests):
    if len(tests) == 1:
        return tests[0]
    return lambda rec: any(t(rec) for t in tests)


def _all(tests):
    if len(tests) == 1:
        return tests[0]
    return lambda rec: all(t(rec) for t in tests)


def compile_query(query, field_type, value_of, unknown_mode="ignore"):
    """A predicate over records, or NO_ROWS.

    Unknown fields and unparsable terms are dropped (ServiceNow's default)
    or, with unknown_mode "empty" (glide.invalid_query.returns_no_rows),
    make the whole query return nothing."""
    bad = bool(query.invalid)
    groups = []
    for group in query.groups:
        clauses = []
        for clause in group:
            kept = [t for t in clause if field_type(t.field) is not None]
            bad = bad or len(kept) != len(clause)
            if kept:
                clauses.append(_any([_term_test(t, field_type(t.field) in NUMERIC_TYPES,
                                                value_of) for t in kept]))
        # A group left without conditions matches every row.
        groups.append(_all(clauses) if clauses else (lambda rec: True))
    if bad and unknown_mode == "empty":
        return NO_ROWS
    return _any(groups)


def sort_rows(rows, order, field_type, value_of):
    """Stable sort by chained ORDERBY keys; unknown fields are skipped.
    Empty values sort first ascending, as NULLs do in the database."""
    for field, desc in reversed(order):
        ftype = field_type(field)
        if ftype is None:
            continue
        numeric = ftype in NUMERIC_TYPES

        def key(rec, field=field, numeric=numeric):
            v = value_of(rec, field)
            if v == "":
                return (0, 0.0, "")
            n = _num(v) if numeric else None
            return (1, n, "") if n is not None else (2, 0.0, v)
        rows.sort(key=key, reverse=desc)
    return rows
