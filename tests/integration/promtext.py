"""A strict reader of the Prometheus text exposition format (0.0.4), as
node_exporter's textfile collector takes it, with the project's own naming
rules on top.  parse(text) returns {family: {"type", "help", "samples":
{(name, labels): value}}} or raises ValueError naming the line.

Checked: line grammar (metric and label names, escapes in label values and
HELP, numbers), at most one HELP and one TYPE per family, both before its
first sample, a family's samples contiguous, no series twice, the text
ending in a newline; and ours: every name starts with imperai_snow_,
counters end in _total and never go negative, every family has HELP and
TYPE."""
import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r"(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN)"
SAMPLE = re.compile(r"^(%s)(\{.*\})? (%s)( -?[0-9]+)?$" % (NAME, VALUE))
LABEL_PAIR = re.compile(r'(%s)="((?:[^"\\\n]|\\[\\"n])*)"' % LABEL)
HELP = re.compile(r"^# HELP (%s) ((?:[^\\\n]|\\[\\n])*)$" % NAME)
TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)
PREFIX = "imperai_snow_"


def _labels(text, where):
    if text is None:
        return ()
    inner = text[1:-1]
    pairs, pos = [], 0
    while pos < len(inner):
        m = LABEL_PAIR.match(inner, pos)
        if not m:
            raise ValueError("%s: bad label syntax at %r" % (where, inner[pos:]))
        if m.group(1).startswith("__"):
            raise ValueError("%s: reserved label name %s" % (where, m.group(1)))
        pairs.append((m.group(1), m.group(2)))
        pos = m.end()
        if pos < len(inner):
            if inner[pos] != ",":
                raise ValueError("%s: expected ',' between labels" % where)
            pos += 1
            if pos == len(inner):
                raise ValueError("%s: trailing comma in labels" % where)
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("%s: a label given twice" % where)
    return tuple(sorted(pairs))


def _family(fams, name, where):
    return fams.setdefault(name, {"type": None, "help": None, "samples": {}, "line": where})


def parse(text):
    if not text.endswith("\n"):
        raise ValueError("the text does not end with a newline")
    fams, current, closed = {}, None, set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = "line %d" % n
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            m = (HELP if line.startswith("# HELP ") else TYPE).match(line)
            if not m:
                raise ValueError("%s: malformed %r" % (where, line))
            fam = _family(fams, m.group(1), where)
            key = "help" if line.startswith("# HELP ") else "type"
            if fam[key] is not None:
                raise ValueError("%s: second %s for %s" % (where, key.upper(), m.group(1)))
            if fam["samples"]:
                raise ValueError("%s: %s after samples of %s" % (where, key.upper(), m.group(1)))
            fam[key] = m.group(2)
            if current and current != m.group(1):
                closed.add(current)
            current = m.group(1)
            continue
        if line.startswith("#"):
            continue
        if not line.strip():
            raise ValueError("%s: empty line" % where)
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("%s: malformed sample %r" % (where, line))
        name = m.group(1)
        if name not in fams:
            raise ValueError("%s: sample of %s before its TYPE" % (where, name))
        if name in closed or (current and name != current):
            raise ValueError("%s: samples of %s are not contiguous" % (where, name))
        labels = _labels(m.group(2), where)
        series = fams[name]["samples"]
        if labels in series:
            raise ValueError("%s: series %s%s given twice" % (where, name, m.group(2) or ""))
        series[labels] = float(m.group(3))
    for name, fam in fams.items():
        _ours(name, fam)
    return fams


def _ours(name, fam):
    if not name.startswith(PREFIX):
        raise ValueError("%s: name without the %s prefix" % (name, PREFIX))
    if fam["help"] is None or fam["type"] is None:
        raise ValueError("%s: HELP or TYPE missing" % name)
    if fam["type"] == "counter":
        if not name.endswith("_total"):
            raise ValueError("%s: a counter's name must end in _total" % name)
        if any(v < 0 for v in fam["samples"].values()):
            raise ValueError("%s: negative counter" % name)
    if not fam["samples"]:
        raise ValueError("%s: a family without samples" % name)


def value(fams, name, **labels):
    """The value of one series, or None."""
    fam = fams.get(name)
    if fam is None:
        return None
    return fam["samples"].get(tuple(sorted(labels.items())))
