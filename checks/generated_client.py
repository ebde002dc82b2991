#!/usr/bin/env python3
"""The integrator's contract, used as an integrator uses it: a Python client
generated from the gateway's own /openapi.json by openapi-python-client
(PyPI; the project did not write it), calling catalog, lookup, verify and
batch with typed requests, and getting typed answers and typed problems.

    python3 checks/generated_client.py --binary target/debug/tongban

Starts `tongban demo` in a temporary home on a free port. Prints
'N passed, M failed' and exits non-zero on a failure.
"""
import argparse, importlib, json, os, subprocess, sys, tempfile

import requests

from demo_gateway import demo_gateway


def generate(base, ca, out):
    """Generates the client package from the served document and imports it."""
    spec = os.path.join(out, "openapi.json")
    with open(spec, "w") as f:
        f.write(requests.get(base + "/openapi.json", verify=ca, timeout=10).text)
    generator = os.path.join(os.path.dirname(sys.executable), "openapi-python-client")
    subprocess.run([generator, "generate", "--path", spec, "--meta", "none",
                    "--output-path", os.path.join(out, "tongban_client")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sys.path.insert(0, out)
    return importlib.import_module("tongban_client")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/debug/tongban")
    args = ap.parse_args()
    results = []
    with demo_gateway(args.binary, "tongban-client-") as (base, ca, home), \
            tempfile.TemporaryDirectory() as out:
        generate(base, ca, out)
        from tongban_client import AuthenticatedClient
        from tongban_client.api.records import batch, catalog, lookup, verify
        from tongban_client.models import (BatchAnswer, BatchRequest, CatalogAnswer, Comparison, Condition,
                                           Problem, RecordAnswer, VerifyAnswer, VerifyRequest)

        def token(dept, sub, role):
            return subprocess.check_output([args.binary, "token", "--home", home, "--dept", dept,
                                            "--sub", sub, "--roles", role], text=True).strip()

        def client(tok):
            return AuthenticatedClient(base_url=base, token=tok, verify_ssl=ca)

        def sample(dataset, pred=lambda r: True):
            with open(os.path.join(home, f"samples/{dataset}.jsonl")) as f:
                return next(r for r in map(json.loads, f) if pred(r))

        clerk = client(token("minzheng", "clerk-007", "dibao_reviewer"))
        c = catalog.sync(client=clerk)
        results.append((isinstance(c, CatalogAnswer) and any(e.dataset == "renshe.shebao" for e in c.datasets),
                        "catalog: a typed answer listing the granted datasets"))

        rec = sample("renshe.shebao", lambda r: isinstance(r.get("contribution_base"), int))
        rid = rec["id_number"]
        a = lookup.sync("renshe.shebao", rid, client=clerk, x_purpose="dibao_review", x_case_ref="MZ-2026-000123")
        results.append((isinstance(a, RecordAnswer) and a.dataset == "renshe.shebao" and a.audit.seq > 0,
                        f"lookup: a typed record answer ({type(a).__name__})"))

        v = verify.sync("renshe.shebao", rid, client=clerk, x_purpose="dibao_review", x_case_ref="MZ-2026-000123",
                        body=VerifyRequest(conditions=[
                            Condition(field="contribution_base", op=Comparison.AT_LEAST, value=3000)]))
        results.append((isinstance(v, VerifyAnswer)
                        and v.results[0].match == (rec["contribution_base"] >= 3000),
                        f"verify: a typed yes or no per condition ({type(v).__name__})"))

        pension = client(token("renshe", "batch-1", "pension_clerk"))
        ids = [sample("gongan.hukou")["id_number"], "11010519491231002X"]
        b = batch.sync("gongan.hukou", client=pension, x_purpose="pension_eligibility",
                       body=BatchRequest(resident_ids=ids))
        results.append((isinstance(b, BatchAnswer) and [str(x.status) for x in b.results] == ["found", "not_found"],
                        f"batch: a typed answer per resident ({type(b).__name__})"))

        # Refusals are typed problems, with the stable type to branch on.
        p = lookup.sync("renshe.shebao", rid, client=clerk, x_purpose="school_admission",
                        x_case_ref="MZ-2026-000123")
        results.append((isinstance(p, Problem) and p.type_.startswith("/problems/") and p.status == 403,
                        f"a refused lookup is a typed problem: {getattr(p, 'type_', p)}"))
        p = lookup.sync("renshe.shebao", rid, client=client("not-a-token"), x_purpose="dibao_review")
        results.append((isinstance(p, Problem) and p.type_ == "/problems/token-invalid" and p.status == 401,
                        f"a bad token is a typed problem: {getattr(p, 'type_', p)}"))
        p = verify.sync("renshe.shebao", rid, client=clerk, x_purpose="dibao_review", x_case_ref="MZ-2026-000123",
                        body=VerifyRequest(conditions=[]))
        results.append((isinstance(p, Problem) and p.type_ == "/problems/invalid-condition",
                        f"an empty verify is a typed problem: {getattr(p, 'type_', p)}"))
    failed = [what for ok, what in results if not ok]
    for ok, what in results:
        print(("ok   " if ok else "FAIL ") + what)
    print(f"generated_client: {len(results) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
