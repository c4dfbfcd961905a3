"""A schemathesis run with every check against the OpenAPI document of a real `mf serve` with
writes allowed: requests generated from the schema (valid ones, ones just outside it, and
sequences of them) never get a server error, every answer has a documented status, content type,
headers and shape, schema-valid requests are accepted and invalid ones refused (the exceptions,
values checked by meaning, are in serve_schemathesis.toml). About a minute here; the long run
(10 minutes) is `benchmarks/bench_serve.py --only schemathesis`."""

import os
from pathlib import Path

from serve_support import Server, make_twin, schemathesis_run


def test_schemathesis_with_every_check_finds_nothing(tmp_path):
    twin = make_twin(tmp_path / "drone")
    server = Server(twin, "--allow-writes", "--actor", "agent:schemathesis")
    try:
        p = schemathesis_run(server, tmp_path, seconds=int(os.environ.get("MF_SCHEMATHESIS_SECONDS", "60")))
    finally:
        log = server.stop()
    summary = p.stdout.split("SUMMARY")[-1]
    assert p.returncode == 0, p.stdout[-8000:]
    assert "18/18" in summary and "Failures" not in summary and "Errors" not in summary, summary
    assert "Traceback" not in log and "internal error" not in log, log
