"""A second-language client: Python stubs generated with grpcio-tools from the
project's protos drive every RPC of both services against a running server.

    python3 tests/interop/client.py 127.0.0.1:50051

The server must hold no records yet. Exits non-zero, naming the check, when
anything differs from the contract. Run by tests/interop.rs.
"""

import importlib
import os
import sys
import tempfile
import threading
import queue

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = os.path.join(HERE, "..", "..", "proto")


def generate_stubs():
    """Compiles the protos into a temporary package and imports it."""
    out = tempfile.mkdtemp(prefix="lodestone-stubs-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = [
        os.path.join(PROTOS, "lodestone", "v1", name)
        for name in ("records.proto", "risk.proto")
    ]
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTOS}", f"-I{include}",
         f"--python_out={out}", f"--grpc_python_out={out}"] + files
    )
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out)
    names = ["records_pb2", "records_pb2_grpc", "risk_pb2", "risk_pb2_grpc"]
    return [importlib.import_module(f"lodestone.v1.{n}") for n in names]


records, records_grpc, risk, risk_grpc = generate_stubs()
CHECKS = []


def check(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")
    CHECKS.append(what)


def refused(call, code, reason):
    """Runs `call`, which must fail with `code`; returns the error."""
    try:
        call()
    except grpc.RpcError as e:
        check(e.code() == code, f"{reason}: code {e.code()} is {code}")
        # google.rpc.Status rides in the grpc-status-details-bin trailer.
        details = dict(e.trailing_metadata() or ()).get("grpc-status-details-bin")
        check(details is not None and reason.encode() in details,
              f"{reason} is named in the status details")
        return e
    check(False, f"{reason}: the call was refused")


def network():
    m = records.Material(code="DY", name="Dysprosium", controlled_by="CN",
                         controlled_from="2025-04-04")
    s1 = records.Supplier(id="PY-MAG", name="Magnet maker", country="CN", tier=2)
    s2 = records.Supplier(id="PY-T1", name="Motor maker", country="DE", tier=1)
    magnet = records.Component(
        id="PY-MAGNET", name="Magnet", on_hand_units=100,
        sources=[records.Source(supplier_id="PY-MAG", share=1.0)],
        materials=[records.MaterialContent(material="DY", grams_per_unit=30.0)])
    motor = records.Component(
        id="PY-MOTOR", name="Motor", on_hand_units=50,
        sources=[records.Source(supplier_id="PY-T1", share=1.0)],
        inputs=[records.ComponentInput(component_id="PY-MAGNET", quantity=1)])
    line = records.ProductionLine(
        id="PY-LINE", name="Line", plant="PY-PLANT", units_per_day=10,
        bom=[records.BomItem(component_id="PY-MOTOR", quantity=1)])
    licence = records.License(
        id="PY-LIC-1", supplier_id="PY-MAG", material="DY",
        status=records.LICENSE_STATUS_PENDING, quantity_kg=50,
        submitted_on="2025-05-01", expected_decision_on="2025-06-20",
        valid_until="2026-05-01")
    return [records.Record(material=m), records.Record(supplier=s1),
            records.Record(supplier=s2), records.Record(component=magnet),
            records.Record(component=motor), records.Record(line=line),
            records.Record(license=licence)]


def main(address):
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=60)
    rec = records_grpc.RecordServiceStub(channel)
    rsk = risk_grpc.RiskServiceStub(channel)
    Code = grpc.StatusCode

    # A stream opened before anything exists sees every change live.
    live = queue.Queue()
    live_call = rsk.StreamLicenseUpdates(
        risk.StreamLicenseUpdatesRequest(heartbeat_seconds=1), timeout=120)

    def follow():
        try:
            for message in live_call:
                live.put(message)
        except grpc.RpcError:
            pass

    threading.Thread(target=follow, daemon=True).start()
    first = live.get(timeout=30)
    check(first.WhichOneof("event") == "heartbeat", "a stream starts with a heartbeat")

    # UpsertRecords, then every Get.
    upserted = rec.UpsertRecords(records.UpsertRecordsRequest(records=network()))
    check(upserted.upserted_count == 7, "UpsertRecords stores seven records")
    revision = upserted.revision
    check(rec.GetMaterial(records.GetMaterialRequest(id="DY")).name == "Dysprosium",
          "GetMaterial")
    check(rec.GetSupplier(records.GetSupplierRequest(id="PY-MAG")).country == "CN",
          "GetSupplier")
    motor = rec.GetComponent(records.GetComponentRequest(id="PY-MOTOR"))
    check(motor.inputs[0].component_id == "PY-MAGNET", "GetComponent")
    check(rec.GetProductionLine(records.GetProductionLineRequest(id="PY-LINE")).plant
          == "PY-PLANT", "GetProductionLine")
    licence = rec.GetLicense(records.GetLicenseRequest(id="PY-LIC-1"))
    check(licence.status == records.LICENSE_STATUS_PENDING and licence.revision == revision,
          "GetLicense carries status and revision")

    # Every List, with paging.
    check([m.code for m in rec.ListMaterials(records.ListMaterialsRequest()).materials]
          == ["DY"], "ListMaterials")
    page = rec.ListSuppliers(records.ListSuppliersRequest(page_size=1))
    check(len(page.suppliers) == 1 and page.next_page_token, "ListSuppliers pages")
    rest = rec.ListSuppliers(records.ListSuppliersRequest(
        page_size=1, page_token=page.next_page_token))
    check([s.id for s in list(page.suppliers) + list(rest.suppliers)] == ["PY-MAG", "PY-T1"],
          "ListSuppliers, second page")
    check(len(rec.ListComponents(records.ListComponentsRequest()).components) == 2,
          "ListComponents")
    check(len(rec.ListProductionLines(records.ListProductionLinesRequest()).lines) == 1,
          "ListProductionLines")
    check(len(rec.ListLicenses(records.ListLicensesRequest(
        status=records.LICENSE_STATUS_PENDING)).licenses) == 1, "ListLicenses by status")

    # Refusals carry their reason, and change nothing.
    refused(lambda: rec.GetSupplier(records.GetSupplierRequest(id="NOPE")),
            Code.NOT_FOUND, "NOT_FOUND")
    bad = records.Component(id="PY-BAD", sources=[records.Source(supplier_id="PY-MAG",
                                                                 share=0.5)])
    refused(lambda: rec.UpsertRecords(records.UpsertRecordsRequest(
        records=[records.Record(component=bad)])), Code.INVALID_ARGUMENT, "INVALID_RECORD")
    refused(lambda: rec.DeleteRecords(records.DeleteRecordsRequest(
        refs=[records.RecordRef(component="PY-MAGNET")])),
        Code.FAILED_PRECONDITION, "STILL_REFERENCED")
    refused(lambda: rec.UpdateLicenseStatus(records.UpdateLicenseStatusRequest(
        id="PY-LIC-1", status=records.LICENSE_STATUS_APPROVED, revision=revision + 100)),
        Code.ABORTED, "REVISION_MISMATCH")
    check(rec.GetLicense(records.GetLicenseRequest(id="PY-LIC-1")).revision == revision,
          "a refused write changes nothing")

    # The risk questions.
    listing = rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(as_of="2025-06-02",
                                                              horizon_days=60))
    check(listing.total_size == 1 and listing.lines[0].line_id == "PY-LINE",
          "ListAtRiskLines finds the line")
    line = listing.lines[0]
    # 50 motors and 100 magnets at 10 a day: the line stops on day 15.
    check(line.days_to_stop == 15 and line.stop_date == "2025-06-17",
          f"the line stops on day 15 ({line.days_to_stop}, {line.stop_date})")
    check(list(line.root_cause_path) == ["PY-MOTOR", "PY-MAGNET"], "root cause path")
    check(list(line.blocking_license_ids) == ["PY-LIC-1"], "blocking licences")
    hopeful = rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(
        as_of="2025-06-02", horizon_days=60,
        scenario=risk.Scenario(pending=risk.PENDING_ASSUMPTION_APPROVED_AS_EXPECTED)))
    check(hopeful.lines[0].days_to_stop == 15,
          "the pending licence comes too late to save day 15")

    # Shipments: 200 magnets on their way, due on day 3, last 20 days more;
    # the motors' stock then 5. The magnets missing over the 60 days are
    # the shortfall.
    shipment = records.Shipment(id="PY-SH-1", component_id="PY-MAGNET", units=200,
                                arrives_on="2025-06-05", reference="PO 4500000001/10")
    rec.UpsertRecords(records.UpsertRecordsRequest(
        records=[records.Record(shipment=shipment)]))
    check(rec.GetShipment(records.GetShipmentRequest(id="PY-SH-1")).units == 200,
          "GetShipment")
    check([s.id for s in rec.ListShipments(records.ListShipmentsRequest(
        component_id="PY-MAGNET")).shipments] == ["PY-SH-1"], "ListShipments by component")
    refused(lambda: rec.DeleteRecords(records.DeleteRecordsRequest(
        refs=[records.RecordRef(component="PY-MAGNET"), records.RecordRef(line="PY-LINE")])),
        Code.FAILED_PRECONDITION, "STILL_REFERENCED")
    shipped = rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(
        as_of="2025-06-02", horizon_days=60)).lines[0]
    check(shipped.days_to_stop == 35 and shipped.shortfall_units == 300,
          f"a shipment moves the stop ({shipped.days_to_stop}, {shipped.shortfall_units})")
    flown = rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(
        as_of="2025-06-02", horizon_days=60, scenario=risk.Scenario(shipments=[
            risk.ScenarioShipment(component_id="PY-MAGNET", units=100,
                                  arrives_on="2025-06-10")]))).lines[0]
    check(flown.days_to_stop == 45 and flown.shortfall_units == 200,
          f"an airfreight what-if ({flown.days_to_stop}, {flown.shortfall_units})")
    idle = rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(
        as_of="2025-06-02", horizon_days=60,
        scenario=risk.Scenario(idled_lines=["PY-LINE"]))).lines[0]
    check(idle.idled and idle.days_to_stop == 0 and idle.units_lost == 600
          and idle.shortfall_units == 0, "an idled line stops by decision")
    refused(lambda: rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(scenario=risk.Scenario(
        shipments=[risk.ScenarioShipment(component_id="PY-MAGNET", units=0,
                                         arrives_on="2025-06-10")]))),
        Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    rec.DeleteRecords(records.DeleteRecordsRequest(refs=[records.RecordRef(shipment="PY-SH-1")]))
    exposure = rsk.GetExposure(risk.GetExposureRequest(supplier_id="PY-MAG",
                                                       as_of="2025-06-02"))
    check(exposure.lines_in_scope == 1 and exposure.lines_at_risk == 1
          and exposure.earliest_stop_date == "2025-06-17", "GetExposure of a supplier")
    check(exposure.pools[0].supplier_id == "PY-MAG" and exposure.pools[0].material == "DY",
          "the supplier's pool")
    refused(lambda: rsk.GetExposure(risk.GetExposureRequest(line_id="NOPE")),
            Code.NOT_FOUND, "NOT_FOUND")
    refused(lambda: rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(horizon_days=5000)),
            Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")

    # Outages and decisions. The motor maker out for 10 days: its motors'
    # 5 days of stock run out first.
    outage = risk.Scenario(outages=[risk.SupplierOutage(supplier_id="PY-T1", days=10)])
    struck = rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(
        as_of="2025-06-02", horizon_days=60, scenario=outage)).lines[0]
    check(struck.days_to_stop == 5 and list(struck.blocking_supplier_ids) == ["PY-T1"]
          and list(struck.blocking_pools) == [], "an outage names the supplier that stops a line")
    refused(lambda: rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(scenario=risk.Scenario(
        outages=[risk.SupplierOutage(supplier_id="NOBODY")]))),
        Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    # The motor maker's 30-day outage costs 10 more days of 10 units and hits
    # on day 5; the magnet maker's costs nothing while its licence is pending.
    impacts = rsk.ListSupplierImpacts(risk.ListSupplierImpactsRequest(
        as_of="2025-06-02", horizon_days=60, page_size=1))
    first = impacts.impacts[0]
    check(impacts.total_size == 2 and impacts.recovery_days == 30 and impacts.next_page_token,
          "ListSupplierImpacts pages")
    check(first.supplier_id == "PY-T1" and abs(first.units_lost - 100) < 1e-9
          and first.time_to_survive_days == 5 and first.critical
          and first.risk_exposure_index == 1.0 and first.first_hit_line_id == "PY-LINE",
          f"the costliest supplier's impact ({first})")
    rest = rsk.ListSupplierImpacts(risk.ListSupplierImpactsRequest(
        as_of="2025-06-02", horizon_days=60, page_size=1, page_token=impacts.next_page_token))
    second = rest.impacts[0]
    check(second.supplier_id == "PY-MAG" and second.units_lost == 0
          and not second.HasField("time_to_survive_days") and not second.critical
          and not rest.next_page_token, f"the harmless supplier, last ({second})")
    # Granted on 2025-06-20, the licence saves all but 3 short days.
    stakes = rsk.ListLicenseStakes(risk.ListLicenseStakesRequest(
        as_of="2025-06-02", horizon_days=60))
    stake = stakes.stakes[0]
    check(stakes.total_size == 1 and stake.license_id == "PY-LIC-1"
          and stake.status == records.LICENSE_STATUS_PENDING
          and stake.granted_on == "2025-06-20" and abs(stake.units_at_stake - 420) < 1e-9
          and stake.lines_at_stake == 1 and stake.stop_date_if_denied == "2025-06-17",
          f"ListLicenseStakes weighs the pending licence ({stake})")
    refused(lambda: rsk.ListLicenseStakes(risk.ListLicenseStakesRequest(
        statuses=[records.LICENSE_STATUS_APPROVED])), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")

    # Forecasts. The store has no decided dysprosium licence, so the odds are
    # the prior, 1 in 4. Granted on its expected day, the pending licence
    # cuts the loss from 450 to 30 units; it stops the line on day 15 either
    # way. Which samples grant it follows the spec's generator, written here
    # again from its definition.
    def draw(seed, k, licence, j):
        mask = (1 << 64) - 1
        h = 0xcbf29ce484222325
        for b in licence.encode():
            h = ((h ^ b) * 0x100000001b3) & mask
        x = seed ^ h ^ (((k + 1) * 0x9e3779b97f4a7c15) & mask) ^ ((j * 0xd1b54a32d192ed03) & mask)
        x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & mask
        x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & mask
        x ^= x >> 31
        return (x >> 11) / 2.0 ** 53
    granted = sum(1 for k in range(200) if draw(5, k, "PY-LIC-1", 1) < 0.25)
    forecast = rsk.ListLineForecasts(risk.ListLineForecastsRequest(
        as_of="2025-06-02", horizon_days=60, samples=200, seed=5, decision_spread_days=0))
    line = forecast.forecasts[0]
    check(forecast.total_size == 1 and forecast.samples == 200 and line.line_id == "PY-LINE"
          and line.stop_probability == 1.0 and line.days_to_stop_p10 == 15
          and line.days_to_stop_p90 == 15, f"ListLineForecasts ({line})")
    check(0 < granted < 200 and abs(line.expected_units_lost
                                    - (450 * (200 - granted) + 30 * granted) / 200) < 1e-9,
          f"the samples granted are the generator's ({granted}: {line.expected_units_lost})")
    odds = forecast.approvals[0]
    check(odds.material == "DY" and odds.probability == 0.25 and odds.approved == 0
          and odds.rejected == 0, f"the odds and the record behind them ({odds})")
    refused(lambda: rsk.ListLineForecasts(risk.ListLineForecastsRequest(samples=20000)),
            Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")

    # A watch of the question sees the decision below change the answer.
    watch_call = rsk.WatchAtRiskLines(risk.WatchAtRiskLinesRequest(
        as_of="2025-06-02", horizon_days=60, heartbeat_seconds=1), timeout=120)
    watched = iter(watch_call)
    opening = next(watched)
    check(opening.WhichOneof("event") == "snapshot"
          and [l.line_id for l in opening.snapshot.lines] == ["PY-LINE"],
          "a watch starts with the lines at risk")

    # A decision: the licence log, the live stream and the watch all see it.
    decided = rec.UpdateLicenseStatus(records.UpdateLicenseStatusRequest(
        id="PY-LIC-1", status=records.LICENSE_STATUS_APPROVED, decided_on="2025-06-02",
        valid_from="2025-06-03", revision=revision))
    check(decided.status == records.LICENSE_STATUS_APPROVED, "UpdateLicenseStatus")
    better = rsk.ListAtRiskLines(risk.ListAtRiskLinesRequest(as_of="2025-06-02",
                                                             horizon_days=60))
    check(better.total_size == 0, "approved in time, the line runs on")
    change = next(m for m in watched if m.WhichOneof("event") == "change").change
    watch_call.cancel()
    check(change.from_revision == opening.snapshot.revision
          and change.revision == decided.revision and change.total_size == 0
          and [l.line_id for l in change.changed] == ["PY-LINE"]
          and not change.changed[0].at_risk and list(change.license_sequences) == [2],
          f"the watch pushes the line that runs on, and the licence event behind it ({change})")

    seen = []
    while len(seen) < 2:
        message = live.get(timeout=30)
        if message.WhichOneof("event") == "update":
            seen.append(message.update)
    check([u.sequence for u in seen] == [1, 2], "live updates in sequence")
    check(seen[0].kind == risk.CHANGE_KIND_CREATED and seen[1].kind == risk.CHANGE_KIND_UPDATED,
          "created, then updated")
    check(seen[1].previous_status == records.LICENSE_STATUS_PENDING,
          "the previous status travels with the update")
    live_call.cancel()

    # Resume: after sequence 1, exactly the decision comes again, then a heartbeat.
    resumed = rsk.StreamLicenseUpdates(risk.StreamLicenseUpdatesRequest(
        after_sequence=1, heartbeat_seconds=1), timeout=60)
    events = []
    for message in resumed:
        events.append(message)
        if len(events) == 3:
            break
    resumed.cancel()
    kinds = [m.WhichOneof("event") for m in events]
    check(kinds == ["heartbeat", "update", "heartbeat"], f"resume shows {kinds}")
    check(events[1].update.sequence == 2, "resume starts after the checkpoint")
    check(events[2].heartbeat.head_sequence == 2, "the idle heartbeat is a checkpoint")
    ahead = rsk.StreamLicenseUpdates(risk.StreamLicenseUpdatesRequest(after_sequence=99))
    e = refused(lambda: next(iter(ahead)), Code.OUT_OF_RANGE, "SEQUENCE_AHEAD")

    # ExportRecords, then ImportRecords of the same into nothing new.
    exported = [r for chunk in rec.ExportRecords(records.ExportRecordsRequest())
                for r in chunk.records]
    check(len(exported) == 7, "ExportRecords returns every record")
    imported = rec.ImportRecords(iter([records.ImportRecordsRequest(records=exported[:3]),
                                       records.ImportRecordsRequest(records=exported[3:])]))
    check(imported.upserted_count == 7, "ImportRecords takes a client stream")

    # DeleteRecords, leaves first.
    deleted = rec.DeleteRecords(records.DeleteRecordsRequest(refs=[
        records.RecordRef(line="PY-LINE"), records.RecordRef(license="PY-LIC-1")]))
    check(deleted.deleted_count == 2, "DeleteRecords")
    refused(lambda: rec.GetProductionLine(records.GetProductionLineRequest(id="PY-LINE")),
            Code.NOT_FOUND, "NOT_FOUND")

    print(f"python interop: {len(CHECKS)} checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
