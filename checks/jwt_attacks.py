#!/usr/bin/env python3
"""JWT attack suite against a running gateway, with tokens minted by PyJWT and
by hand (never by the gateway's own code). Every attack must get 401 with
`WWW-Authenticate: Bearer`, and must be in the audit log as a denial.

    python3 checks/jwt_attacks.py --binary target/debug/tongban

Starts `tongban demo` in a temporary home on a free port, runs the attacks,
stops the gateway. Prints 'N passed, M failed' and exits non-zero on a failure.
"""
import argparse, base64, hashlib, hmac, json, os, signal, socket, subprocess, sys, tempfile, time

import jwt  # PyJWT
import requests

from demo_gateway import demo_gateway


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict, claims: dict, signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/debug/tongban")
    args = ap.parse_args()
    results = []
    with demo_gateway(args.binary, "tongban-jwt-") as (base, ca, home):
        key = open(os.path.join(home, "keys/issuer.pem"), "rb").read()
        pub = open(os.path.join(home, "keys/issuer.pub.pem"), "rb").read()
        rid = json.loads(open(os.path.join(home, "samples/gongan.hukou.jsonl")).readline())["id_number"]
        now = int(time.time())
        good = {"iss": "tongban-demo-issuer", "aud": "tongban", "sub": "clerk-007", "dept": "minzheng",
                "roles": ["dibao_reviewer"], "iat": now, "exp": now + 600}

        def es256(claims, headers=None):
            return jwt.encode(claims, key, algorithm="ES256", headers=headers)

        def without(k):
            c = dict(good); c.pop(k); return c

        def with_(**kw):
            c = dict(good); c.update(kw); return c

        valid = es256(good)
        h, p, sig = valid.split(".")
        attacks = {
            "alg none": raw_token({"alg": "none", "typ": "JWT"}, good),
            "alg None (case)": raw_token({"alg": "None", "typ": "JWT"}, good),
            "HS256 signed with the public key": f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{p}.",
            "stripped signature": f"{h}.{p}.",
            "signature of another token": f"{h}.{b64(json.dumps(with_(dept='gongan')).encode())}.{sig}",
            "kid pointing at a file": es256(good, headers={"kid": "../../../../dev/null"}).rsplit(".", 1)[0] + ".AAAA",
            "jku to a foreign key set": raw_token({"alg": "ES256", "jku": "https://evil.example/jwks.json"}, good, b"x" * 64),
            "x5u to a foreign certificate": raw_token({"alg": "ES256", "x5u": "https://evil.example/cert.pem"}, good, b"x" * 64),
            "embedded jwk": raw_token({"alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, good, b"x" * 64),
            "expired": es256(with_(exp=now - 3600, iat=now - 7200)),
            "nbf in the future": es256(with_(nbf=now + 3600)),
            "wrong audience": es256(with_(aud="another-gateway")),
            "wrong issuer": es256(with_(iss="https://evil.example")),
            "missing dept": es256(without("dept")),
            "missing roles": es256(without("roles")),
            "roles as a string": es256(with_(roles="dibao_reviewer")),
            "unknown department": es256(with_(dept="nosuchdept")),
            "oversize token": es256(with_(pad="x" * 10000)),
            "not a JWT": "not.a.jwt",
        }
        # HS256 over header.payload with the PEM public key as the HMAC secret.
        hs_header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        signing_input = f"{hs_header}.{p}".encode()
        attacks["HS256 signed with the public key"] = f"{hs_header}.{p}.{b64(hmac.new(pub, signing_input, hashlib.sha256).digest())}"

        path = f"/v1/datasets/gongan.hukou/records/{rid}"
        hdr = {"X-Purpose": "dibao_review", "X-Case-Ref": "MZ-2026-000123"}
        seqs = {}
        for name, tok in attacks.items():
            r = requests.get(base + path, headers={**hdr, "Authorization": "Bearer " + tok}, verify=ca, timeout=10)
            ok = r.status_code == 401 and r.headers.get("www-authenticate", "").lower().startswith("bearer") \
                and "problem+json" in r.headers.get("content-type", "") and rid not in r.text
            results.append((ok, f"{name}: {r.status_code}"))
            if r.headers.get("x-audit-seq"):
                seqs[name] = int(r.headers["x-audit-seq"])
        r = requests.get(base + path, headers={**hdr, "Authorization": "Bearer " + valid}, verify=ca, timeout=10)
        results.append((r.status_code == 200, f"the untampered token is accepted: {r.status_code}"))

        # One caller, one identity: a client certificate names its department
        # (its CN); a token bound to a certificate (RFC 8705 cnf.x5t#S256) goes
        # only with it; an issuer vouches only for its departments and staff roles.
        import ssl
        clients = os.path.join(home, "certs/clients")
        cert = lambda d: (os.path.join(clients, f"{d}.pem"), os.path.join(clients, f"{d}-key.pem"))
        der = ssl.PEM_cert_to_DER_cert(open(cert("minzheng")[0]).read())
        bound = es256(with_(cnf={"x5t#S256": b64(hashlib.sha256(der).digest())}))
        identity = [
            ("minzheng's token over renshe's certificate", valid, cert("renshe"), path, "certificate-department-mismatch"),
            ("a token bound to a certificate, without it", bound, None, path, "certificate-binding-mismatch"),
            ("a token bound to minzheng's certificate, over renshe's", bound, cert("renshe"), path, "certificate-department-mismatch"),
            ("a staff role the issuer may not vouch for", es256(with_(dept="shujuju", roles=["resident"])), None,
             "/v1/audit/events", "issuer-out-of-scope"),
        ]
        for name, tok, client_cert, where, slug in identity:
            r = requests.get(base + where, headers={**hdr, "Authorization": "Bearer " + tok}, verify=ca, cert=client_cert, timeout=10)
            ok = r.status_code == 401 and r.headers.get("www-authenticate", "").lower().startswith("bearer") \
                and "problem+json" in r.headers.get("content-type", "") and rid not in r.text \
                and r.json().get("type") == f"/problems/{slug}"
            results.append((ok, f"{name}: {r.status_code} {r.text[:120]}"))
            if r.headers.get("x-audit-seq"):
                seqs[name] = int(r.headers["x-audit-seq"])
        r = requests.get(base + path, headers={**hdr, "Authorization": "Bearer " + bound}, verify=ca, cert=cert("minzheng"), timeout=10)
        results.append((r.status_code == 200, f"a bound token over its own certificate is accepted: {r.status_code}"))

        officer = es256(with_(sub="officer-1", dept="shujuju", roles=["privacy_officer"]))
        for name in list(attacks) + [i[0] for i in identity]:
            seq = seqs.get(name)
            ok = False
            if seq is not None:
                e = requests.get(f"{base}/v1/audit/events/{seq}", headers={"Authorization": "Bearer " + officer}, verify=ca, timeout=10).json()
                # A refused identity names the department the token claimed; a refused token, none.
                ok = e.get("status") == 401 and e.get("decision") == "deny" \
                    and (e.get("consumer") is None or name not in attacks)
            results.append((ok, f"{name}: audited as a denial"))
    failed = [w for ok, w in results if not ok]
    for w in failed:
        print("FAILED:", w)
    print(f"jwt_attacks: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
