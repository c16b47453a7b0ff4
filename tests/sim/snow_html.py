"""An allow-list HTML sanitizer in the spirit of ServiceNow's HTMLSanitizer.

ServiceNow cleans HTML field values on write: only listed tags and
attributes survive.  Like it, this removes scripts (with their content),
event-handler attributes, style, comments, data-* attributes and any URL
that is not http(s); tags not on the list are dropped but their text is
kept.  Text and attribute values are re-escaped, so the output is
well-formed whatever came in.
"""

import html
from html.parser import HTMLParser

ALLOWED_TAGS = frozenset("""
a abbr b blockquote br caption code col colgroup dd del div dl dt em font
h1 h2 h3 h4 h5 h6 hr i img ins kbd li ol p pre q s small span strike strong
sub sup table tbody td tfoot th thead tr u ul
""".split())
VOID_TAGS = frozenset(("br", "hr", "img", "col"))
# Elements removed together with everything inside them.
DROP_WITH_CONTENT = frozenset((
    "script", "style", "iframe", "object", "embed", "noscript", "template",
    "head", "title", "textarea", "select", "applet", "frameset", "svg", "math",
))
GLOBAL_ATTRS = frozenset(("class", "id", "title", "dir", "lang", "align"))
TAG_ATTRS = {
    "a": frozenset(("href", "target", "rel", "name")),
    "img": frozenset(("src", "alt", "width", "height", "border")),
    "td": frozenset(("colspan", "rowspan", "valign", "width")),
    "th": frozenset(("colspan", "rowspan", "valign", "width")),
    "table": frozenset(("border", "cellpadding", "cellspacing", "width", "summary")),
    "font": frozenset(("color", "size", "face")),
    "ol": frozenset(("start", "type")),
    "ul": frozenset(("type",)),
}
URL_ATTRS = frozenset(("href", "src"))
SAFE_SCHEMES = ("http://", "https://")


def safe_url(value):
    """Only absolute http(s) URLs; control characters and blanks inside
    the scheme ("java\\tscript:") are removed before looking."""
    squeezed = "".join(ch for ch in value if ord(ch) > 32).lower()
    return squeezed.startswith(SAFE_SCHEMES)


def keep_attr(tag, name, value):
    if name.startswith("on") or name == "style" or name.startswith("data-"):
        return False
    if name not in GLOBAL_ATTRS and name not in TAG_ATTRS.get(tag, ()):
        return False
    return name not in URL_ATTRS or safe_url(value)


class _Sanitizer(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.open = []       # allowed tags currently open
        self.skip_depth = 0  # inside a DROP_WITH_CONTENT element

    def handle_starttag(self, tag, attrs):
        if tag in DROP_WITH_CONTENT:
            self.skip_depth += 1
            return
        if self.skip_depth or tag not in ALLOWED_TAGS:
            return
        kept = "".join(' %s="%s"' % (name, html.escape(value or "", quote=True))
                       for name, value in attrs if keep_attr(tag, name, value or ""))
        self.out.append("<%s%s>" % (tag, kept))
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS and self.open and self.open[-1] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in DROP_WITH_CONTENT:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if self.skip_depth or tag not in self.open:
            return
        # Close anything left open inside it, so the output nests properly.
        while self.open:
            inner = self.open.pop()
            self.out.append("</%s>" % inner)
            if inner == tag:
                break

    def handle_data(self, data):
        if not self.skip_depth:
            self.out.append(html.escape(data, quote=False))

    # Comments, processing instructions and declarations are dropped.
    def handle_comment(self, data):
        pass

    def handle_decl(self, decl):
        pass

    def handle_pi(self, data):
        pass

    def unknown_decl(self, data):
        pass

    def result(self):
        self.close()
        while self.open:
            self.out.append("</%s>" % self.open.pop())
        return "".join(self.out)


def sanitize(text):
    """The sanitized form of an HTML string (idempotent)."""
    if not text:
        return ""
    parser = _Sanitizer()
    parser.feed(text)
    return parser.result()
