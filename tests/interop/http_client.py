"""A second-language client of the JSON API: Python's `requests`, with no
generated code, against a server running the demonstration network.

    python3 tests/interop/http_client.py http://127.0.0.1:50051

Exits non-zero, naming the check, when anything differs from the contract
or the published OpenAPI description. Run by tests/interop.rs.
"""

import json
import sys
import threading
import queue

import requests
from openapi_spec_validator import validate


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


def call(base, service, method, body, expect=200):
    response = requests.post(
        f"{base}/lodestone.v1.{service}/{method}", json=body, timeout=60
    )
    check(
        response.status_code == expect,
        f"{service}/{method} answers {expect} (got {response.status_code}: {response.text[:300]})",
    )
    check(
        response.headers["Content-Type"] == "application/json",
        f"{method} answers JSON",
    )
    return response.json()


def reason(status):
    for detail in status.get("details", []):
        if detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo":
            return detail["reason"]
    return None


def follow(base, params, headers, events, stop):
    """Reads server-sent events into `events` as (name, id, data)."""
    with requests.get(
        f"{base}/lodestone.v1.RiskService/StreamLicenseUpdates",
        params=params,
        headers={"Accept": "text/event-stream", **headers},
        stream=True,
        timeout=60,
    ) as response:
        events.put(("status", response.status_code, response.headers["Content-Type"]))
        name, ident = None, None
        for line in response.iter_lines(decode_unicode=True):
            if stop.is_set():
                return
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("id: "):
                ident = line[len("id: "):]
            elif line.startswith("data: "):
                events.put((name, ident, json.loads(line[len("data: "):])))
                name, ident = None, None


def next_event(events, name):
    while True:
        event = events.get(timeout=60)
        if event[0] == name:
            return event


def main(base):
    # The published description is valid OpenAPI and names every method.
    description = requests.get(f"{base}/openapi.json", timeout=60).json()
    validate(description)
    check(True, "/openapi.json is valid OpenAPI 3.1")
    paths = description["paths"]
    check(
        "/lodestone.v1.RiskService/ListAtRiskLines" in paths
        and "/lodestone.v1.RecordService/UpdateLicenseStatus" in paths,
        "the description holds both services' methods",
    )
    schemas = description["components"]["schemas"]

    # The demo's five lines that stop, first to stop first.
    answer = call(
        base, "RiskService", "ListAtRiskLines", {"asOf": "2025-06-02", "horizonDays": 90}
    )
    stops = [(line["lineId"], line["stopDate"]) for line in answer["lines"]]
    check(
        stops[0] == ("GYR-HEV1", "2025-06-26") and len(stops) >= 5,
        f"the lines at risk, first to stop first: {stops}",
    )
    for field in answer["lines"][0]:
        check(
            field in schemas["lodestone.v1.LineRisk"]["properties"],
            f"LineRisk.{field} is in the OpenAPI schema",
        )
    check(isinstance(answer["revision"], str), "64-bit integers are JSON strings")

    # Errors: a google.rpc.Status under the HTTP status of its code.
    status = call(base, "RecordService", "GetLicense", {"id": "LIC-NOPE"}, expect=404)
    check(status["code"] == 5 and reason(status) == "NOT_FOUND", f"not found: {status}")
    status = call(
        base, "RiskService", "ListAtRiskLines", {"horizonDays": 9999}, expect=400
    )
    violations = [
        v["field"]
        for d in status["details"]
        if d["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for v in d["fieldViolations"]
    ]
    check(violations == ["horizon_days"], f"the bad field is named: {status}")
    response = requests.post(
        f"{base}/lodestone.v1.RecordService/UpdateLicenseStatus",
        data="id=LIC-JXM-DY-0521",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    check(response.status_code == 415, "a form body is refused with 415")
    before = call(base, "RecordService", "GetLicense", {"id": "LIC-JXM-DY-0521"})
    call(
        base,
        "RecordService",
        "UpdateLicenseStatus",
        {"id": "LIC-JXM-DY-0521", "status": "LICENSE_STATUS_GRANTED"},
        expect=400,
    )
    after = call(base, "RecordService", "GetLicense", {"id": "LIC-JXM-DY-0521"})
    check(before == after, "a refused write changed nothing")

    # A decision over JSON reaches a server-sent event stream, whose event
    # id is the licence sequence; reconnecting with Last-Event-ID resumes.
    events, stop = queue.Queue(), threading.Event()
    reader = threading.Thread(
        target=follow,
        args=(base, {"from_now": "true", "heartbeat_seconds": "1"}, {}, events, stop),
        daemon=True,
    )
    reader.start()
    opened = events.get(timeout=60)
    check(opened[1:] == (200, "text/event-stream"), f"the stream opens: {opened}")
    heartbeat = next_event(events, "heartbeat")
    head = int(heartbeat[2]["heartbeat"]["headSequence"])
    decided = call(
        base,
        "RecordService",
        "UpdateLicenseStatus",
        {
            "id": "LIC-JXM-DY-0521",
            "status": "LICENSE_STATUS_APPROVED",
            "decidedOn": "2025-06-03",
            "revision": before["revision"],
        },
    )
    check(decided["status"] == "LICENSE_STATUS_APPROVED", "the decision is recorded")
    update = next_event(events, "update")
    check(
        update[1] == str(head + 1) and update[2]["update"]["license"]["id"] == "LIC-JXM-DY-0521",
        f"the decision arrives as event {head + 1}: {update}",
    )
    stop.set()

    events = queue.Queue()
    threading.Thread(
        target=follow,
        args=(base, {"heartbeat_seconds": "1"}, {"Last-Event-ID": str(head)}, events, threading.Event()),
        daemon=True,
    ).start()
    update = next_event(events, "update")
    check(update[1] == str(head + 1), f"Last-Event-ID {head} resumes at {head + 1}")

    # The decision shows in the answer: the panel-van line runs on.
    answer = call(
        base, "RiskService", "ListAtRiskLines", {"asOf": "2025-06-02", "horizonDays": 90}
    )
    check(
        "VIG-LCV1" not in [line["lineId"] for line in answer["lines"]],
        "after the renewal the panel-van line no longer stops",
    )
    print("all HTTP checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
