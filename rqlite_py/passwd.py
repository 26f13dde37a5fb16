"""rqlite-py-passwd: a salted scrypt hash of a password, for the -auth file.

    rqlite-py-passwd                 # prints the hash
    rqlite-py-passwd bob query execute
                                     # prints a whole entry for user bob

The password is asked twice on a terminal, or read as one line from standard
input (`echo secret | rqlite-py-passwd`), never taken from the command line,
where other users of the machine could read it.
"""

from __future__ import annotations

import getpass
import json
import sys

from .auth import PERMS, ScryptHash


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "-help", "--help"):
        print(__doc__.strip())
        return 0
    unknown = [p for p in args[1:] if p not in PERMS]
    if unknown:
        print(f"rqlite-py-passwd: unknown permission(s): {', '.join(unknown)}", file=sys.stderr)
        print(f"known: {', '.join(sorted(PERMS))}", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("rqlite-py-passwd: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("rqlite-py-passwd: empty password", file=sys.stderr)
        return 1
    hashed = str(ScryptHash.make(password))
    if not args:
        print(hashed)
    else:
        print(json.dumps({"username": args[0], "password_hash": hashed, "perms": args[1:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
