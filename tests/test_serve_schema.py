"""A schemathesis run against the OpenAPI document of a real `mf serve` with writes allowed:
requests generated from the schema (valid ones, and ones just outside it) never get a server
error, and every answer has a documented status, content type and shape."""

import os
import subprocess
import sys
from pathlib import Path

from serve_support import Server, make_twin

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance,unsupported_method,allow_header_conformance")


def test_schemathesis_finds_no_server_error(tmp_path):
    twin = make_twin(tmp_path / "drone")
    server = Server(twin, "--allow-writes", "--actor", "agent:schemathesis")
    try:
        st = Path(sys.executable).with_name("schemathesis")
        p = subprocess.run([str(st), "run", f"{server.url}/openapi.json", "--checks", CHECKS, "--max-examples", "25",
                            "--workers", "1", "--seed", os.environ.get("MF_SCHEMATHESIS_SEED", "20260301"), "--no-color",
                            "--report-dir", str(tmp_path / "report")],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:
        log = server.stop()
    assert p.returncode == 0, p.stdout[-6000:]
    assert "18/18" in p.stdout and "failures" not in p.stdout.split("SUMMARY")[-1], p.stdout[-3000:]
    assert "Traceback" not in log and "internal error" not in log, log
