"""Issues OpenID Connect tokens with PyJWT, as an identity provider does, for iamd's tests.

Reads {"key_file": PATH, "kid": ID, "tokens": [{claims...}]}: creates an RSA key in key_file if
there is none, prints the public JWKS on the first line, then one RS256 token per line. Each
token's claims are given; "exp" and "iat" are offsets in seconds from now.
"""

import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

spec = json.load(sys.stdin)
path = spec["key_file"]
if os.path.exists(path):
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
else:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
public.update({"kid": spec["kid"], "use": "sig", "alg": "RS256"})
print(json.dumps({"keys": [public]}))
now = int(time.time())
for claims in spec["tokens"]:
    claims = dict(claims)
    claims["exp"] = now + claims.get("exp", 600)
    claims["iat"] = now + claims.get("iat", 0)
    print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": spec["kid"]}))
