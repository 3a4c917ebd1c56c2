"""Computes TOTP codes with pyotp, as authenticator apps do, for iamd's tests.

Reads {"seed": BASE32, "times": [unix seconds, ...]} and prints one code per line.
"""

import json
import sys

import pyotp

spec = json.load(sys.stdin)
totp = pyotp.TOTP(spec["seed"])
for at in spec["times"]:
    print(totp.at(at))
