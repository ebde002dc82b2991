#!/usr/bin/env python3
"""Signed answers checked by an implementation the project did not write
(PyJWT): a proof from `Prefer: signed` verifies with the published JWK Set,
and fails when a payload byte changes or another key is offered.

    python3 checks/proof_pyjwt.py --binary target/debug/tongban

Starts `tongban demo` in a temporary home on a free port. Prints
'N passed, M failed' and exits non-zero on a failure. The README shows the
same few lines for a department's own verifier.
"""
import argparse, base64, hashlib, json, os, signal, socket, subprocess, sys, tempfile, time

import jwt  # PyJWT
import requests

from demo_gateway import demo_gateway
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/debug/tongban")
    args = ap.parse_args()
    results = []
    with demo_gateway(args.binary, "tongban-proof-") as (base, ca, home):
        token = subprocess.check_output([args.binary, "token", "--home", home, "--dept", "minzheng",
                                         "--sub", "clerk-007", "--roles", "dibao_reviewer"], text=True).strip()
        rid = json.loads(open(os.path.join(home, "samples/gongan.hukou.jsonl")).readline())["id_number"]
        r = requests.get(f"{base}/v1/datasets/gongan.hukou/records/{rid}", verify=ca, timeout=10,
                         headers={"Authorization": "Bearer " + token, "X-Purpose": "dibao_review",
                                  "X-Case-Ref": "MZ-2026-000123", "Prefer": "signed"})
        answer = r.json()
        proof = answer.get("proof", "")
        results.append((r.status_code == 200 and r.headers.get("preference-applied") == "signed",
                        f"signed lookup answered with Preference-Applied: {r.status_code}"))

        # What a department's verifier does: the JWK Set, the kid, PyJWT.
        jwks = requests.get(base + "/.well-known/jwks.json", verify=ca, timeout=10).json()
        kid = jwt.get_unverified_header(proof)["kid"]
        key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
        claims = jwt.decode(proof, key, algorithms=["EdDSA"])
        results.append((claims["record"] == answer["record"], "the proof holds the record exactly as returned"))
        results.append((claims["resident_id"] == rid and claims["consumer"] == "minzheng"
                        and claims["purpose"] == "dibao_review" and claims["case_ref"] == "MZ-2026-000123",
                        "the proof names resident, consumer, purpose and case"))
        results.append((claims["audit_seq"] == answer["audit"]["seq"], "the proof names the audit event"))

        # The audit event holds the proof's hash.
        officer = subprocess.check_output([args.binary, "token", "--home", home, "--dept", "shujuju",
                                           "--sub", "officer-1", "--roles", "privacy_officer"], text=True).strip()
        e = requests.get(f"{base}/v1/audit/events/{claims['audit_seq']}", verify=ca, timeout=10,
                         headers={"Authorization": "Bearer " + officer}).json()
        results.append((e.get("proof") == hashlib.sha256(proof.encode()).hexdigest(),
                        "the audit event records the proof's SHA-256"))

        # A changed payload byte, or another key, must fail.
        h, p, sig = proof.split(".")
        payload = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        payload["case_ref"] = "MZ-2026-999999"
        forged = h + "." + base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode() + "." + sig
        try:
            jwt.decode(forged, key, algorithms=["EdDSA"])
            results.append((False, "a changed payload was accepted"))
        except jwt.InvalidSignatureError:
            results.append((True, "a changed payload fails"))
        other = Ed25519PrivateKey.generate().public_key()
        try:
            jwt.decode(proof, other, algorithms=["EdDSA"])
            results.append((False, "another key was accepted"))
        except jwt.InvalidSignatureError:
            results.append((True, "another key fails"))
    failed = [w for ok, w in results if not ok]
    for w in failed:
        print("FAILED:", w)
    print(f"proof_pyjwt: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
