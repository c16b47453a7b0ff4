"""A throw-away CA and a server certificate for 127.0.0.1, made at test
time with the openssl command (no key is ever committed).

    python3 testca.py DIR    # writes DIR/ca.pem, DIR/server.pem, DIR/server.key
"""

import os
import subprocess
import sys


def make_ca_and_cert(d):
    """A CA and a server certificate for 127.0.0.1 and localhost in d;
    returns the paths of ca.pem, server.pem and server.key."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=d)
    os.makedirs(d, exist_ok=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=imperai-snow test CA", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
        "server.key", "-out", "server.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem")
    return [os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key")]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: testca.py DIR")
    print("\n".join(make_ca_and_cert(sys.argv[1])))
