"""Minting Switchboard join tokens in a Python backend, with PyJWT (docs/hosting.md).

Your backend decides who may join which room; the token carries that decision to the edge. Call
join_token() in the view your signed-in users fetch their token from, and hand the token to the page
(``new SwitchboardClient(url, { token })``, or ``?access_token=`` in a palava-client's URL).

HS256 needs PyJWT alone; EdDSA (Ed25519) and ES256 keys need its crypto extra:
``pip install "PyJWT[crypto]"``.

Run as a script, it prints one token::

    KEY_ID=acme-2026-11 KEY_SECRET='...' python mint_token.py ROOM USER [NAME]                 # HS256
    KEY_ID=acme-ed25519 KEY_ALGORITHM=EdDSA PRIVATE_KEY_FILE=acme-ed25519.pem \\
        python mint_token.py ROOM USER [NAME]                                                  # EdDSA
"""

import os
import sys
import time

import jwt


def join_token(key_id, key, room, user, name=None, ttl_seconds=600, algorithm="HS256"):
    """A join token: `user` may join `room` (only that one) as `name` for the next `ttl_seconds`.

    key_id: the key's `id` in the tenants file; the edge finds the key, and your tenant, by it.
    key: an HS256 key's secret (as in the tenants file), or the private key (PEM) of an EdDSA or
        ES256 key whose public key is in the tenants file; `algorithm` says which.
    name: the name the others see; it replaces whatever the client sends.
    ttl_seconds: how long the token may be used to connect (the edge's maximum is 24 hours).
    """
    now = int(time.time())
    claims = {
        "sub": user,
        "room": room,
        "grants": ["join", "send"],
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if name:
        claims["name"] = name
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": key_id})


def main(argv):
    """Prints a token for ROOM and USER, with the key from the environment."""
    key_id = os.environ.get("KEY_ID")
    algorithm = os.environ.get("KEY_ALGORITHM", "HS256")
    if algorithm == "HS256":
        key = os.environ.get("KEY_SECRET")
    else:
        key_file = os.environ.get("PRIVATE_KEY_FILE")
        key = open(key_file, encoding="utf-8").read() if key_file else None
    if len(argv) not in (2, 3) or not key_id or not key:
        print(
            "usage: KEY_ID=... (KEY_SECRET=... | KEY_ALGORITHM=EdDSA|ES256 PRIVATE_KEY_FILE=...) "
            "python mint_token.py ROOM USER [NAME]",
            file=sys.stderr,
        )
        return 64
    room, user = argv[0], argv[1]
    name = argv[2] if len(argv) == 3 else None
    print(join_token(key_id, key, room, user, name, algorithm=algorithm))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
