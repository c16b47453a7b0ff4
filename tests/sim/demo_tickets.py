#!/usr/bin/env python3
"""Creates the demo's tickets through the ServiceNow Table API, as an agent would.

usage: demo_tickets.py BASE_URL [--user admin --password admin]

One incident in an authentication-required category with a password reset
(policy flow "password-reset"), one that needs verification without an
action ("account-access"), and one that needs none (category "software").
"""
import argparse
import base64
import json
import sys
import urllib.parse
import urllib.request


def call(base, auth, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Basic " + auth)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def user_sys_id(base, auth, user_name):
    q = urllib.parse.urlencode({"sysparm_query": "user_name=" + user_name,
                                "sysparm_fields": "sys_id"})
    rows = call(base, auth, "GET", "/api/now/table/sys_user?" + q)["result"]
    if not rows:
        sys.exit("demo: user %s is not in the simulator's seed" % user_name)
    return rows[0]["sys_id"]


TICKETS = [
    ("abel.tuter", "password_reset", "forgotten_password",
     "Cannot log in: forgot my password",
     "I was locked out after the holidays and need my password reset."),
    ("beth.anglin", "account_access", "",
     "Please add me to the finance share",
     "Access to \\\\fs01\\finance needed for the quarterly close."),
    ("charlie.whitherspoon", "software", "",
     "Excel crashes when opening large files",
     "Happens with any file over 50 MB."),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="admin")
    args = ap.parse_args()
    auth = base64.b64encode(("%s:%s" % (args.user, args.password)).encode()).decode()
    for caller, cat, sub, short, desc in TICKETS:
        rec = call(args.base, auth, "POST", "/api/now/table/incident", {
            "caller_id": user_sys_id(args.base, auth, caller),
            "category": cat, "subcategory": sub,
            "short_description": short, "description": desc,
        })["result"]
        print("created %s (%s): %s" % (rec["number"], cat, short))


if __name__ == "__main__":
    main()
