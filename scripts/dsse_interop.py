#!/usr/bin/env python3
"""Checks that a nodeproof DSSE envelope verifies with an independent implementation.

nodeproof's signing and verification are written in Rust; this script asks
securesystemslib (the reference DSSE implementation used by in-toto and TUF) the same two
questions our own tests ask, so a PAE or encoding mistake shared by our signer and our
verifier cannot hide:

  1. Does the envelope verify with the given public key?           (must: prints OK)
  2. With one byte of the decoded payload changed, does it still?   (must not)

Usage: dsse_interop.py ENVELOPE_JSON PUBKEY_PEM
Exit status: 0 if both expectations hold, 1 if one is violated, 2 on bad usage or input.
Get a Python with securesystemslib from scripts/pyenv.
"""

import base64
import copy
import hashlib
import json
import sys

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey
except ImportError as e:
    sys.exit(f"dsse_interop: {e}: run with the Python that scripts/pyenv prints")


def fail(message, status=1):
    print(f"dsse_interop: FAIL: {message}", file=sys.stderr)
    sys.exit(status)


def load_key(path):
    """The key from a SubjectPublicKeyInfo PEM, with nodeproof's keyid (sha256 of the raw
    32-byte key) so securesystemslib's keyid matching picks our signature."""
    try:
        with open(path, "rb") as f:
            public = serialization.load_pem_public_key(f.read())
    except (OSError, ValueError) as e:
        fail(f"cannot load public key {path}: {e}", 2)
    if not isinstance(public, Ed25519PublicKey):
        fail(f"{path} is not an ed25519 public key", 2)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keyid = hashlib.sha256(raw).hexdigest()
    return SSlibKey.from_crypto(public, keyid=keyid), keyid


def verifies(envelope_dict, key):
    # from_dict rewrites the signatures it is given, so hand it a copy.
    envelope = Envelope.from_dict(copy.deepcopy(envelope_dict))
    try:
        envelope.verify([key], 1)
    except VerificationError:
        return False
    return True


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    envelope_path, key_path = argv[1], argv[2]
    key, keyid = load_key(key_path)
    try:
        with open(envelope_path, "rb") as f:
            envelope = json.load(f)
        payload = base64.b64decode(envelope["payload"], validate=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"cannot read envelope {envelope_path}: {e}", 2)

    if not verifies(envelope, key):
        fail(f"{envelope_path} does not verify with key {keyid} under securesystemslib")
    print(f"OK: {envelope_path} verifies with key {keyid} (securesystemslib)")

    if not payload:
        fail("the payload is empty, so there is no byte to change", 2)
    tampered = bytearray(payload)
    tampered[len(tampered) // 2] ^= 0x01
    envelope_tampered = dict(envelope, payload=base64.b64encode(bytes(tampered)).decode())
    if verifies(envelope_tampered, key):
        fail("the envelope still verifies after one payload byte was changed")
    print("OK: a one-byte change to the payload is rejected (securesystemslib)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
