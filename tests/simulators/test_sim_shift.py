"""The simulated shift: plausible, deterministic changes made through the simulators' own state methods."""

from __future__ import annotations

import asyncio
from collections import Counter

from simulators import Dataset, create_apps
from simulators.shift import Shift

STEPS = 60


def kinds(descriptions: list[str]) -> Counter[str]:
    return Counter(description.split()[0] for description in descriptions)


async def test_a_shift_changes_the_plant_and_announces_every_change(small: Dataset) -> None:
    apps = create_apps(small)
    shift = Shift.for_apps(apps, seed=5)
    mes, qms, erp, wms = apps["mes"].state.mes, apps["qms"].state.qms, apps["erp"].state.erp, apps["wms"].state.wms
    client_hold = qms.place_hold(next(iter(qms.lots)), "DEV", "placed by a client", "lotgraph", origin="lotgraph")
    done = [shift.step() for _ in range(STEPS)]
    seen = kinds(done)
    assert set(seen) <= {"produced", "received", "inspected", "held", "released", "opened", "closed", "scrapped"}
    assert seen["produced"] >= STEPS // 5 and seen["inspected"] >= STEPS // 5, seen
    assert all(seen[kind] > 0 for kind in ("received", "held", "released")), seen
    assert seen["opened"] + seen["closed"] + seen["scrapped"] > 0, seen

    produced = [d.split() for d in done if d.startswith("produced")]
    made, orders = [words[1] for words in produced], [words[-1] for words in produced]
    assert made == [f"B26{len(small.lots) + n:05d}" for n in range(1, len(made) + 1)]
    assert all(mes.lots[lot]["status"] == "QC_PENDING" for lot in made)
    assert [mes.executions[order]["produced_lot"] for order in orders] == made, "MES completed ERP's orders"
    released = [erp.sets["A_ProductionOrder_2"].rows[(order,)] for order in orders]
    assert {(o["OrderStatus"], o["GoodsReceiptQuantity"], o["Batch"]) for o in released} == {("REL", "0.000", "")}
    assert not {lot for lot in made if lot in qms.lots or (lot,) in erp.sets["Batch"].rows or lot in wms.by_lot}, (
        "production reached another system: only a client connecting the plant may carry it on"
    )
    assert erp.last_change == 0, "the shift posts no goods movement in ERP"

    deliveries = [d.split() for d in done if d.startswith("received")]
    for words in deliveries:
        lot, order = words[1], words[-1]
        [unit] = [wms.units[hu] for hu in wms.by_lot[lot]]
        assert lot.startswith("R26") and unit.status == "QUARANTINE"
        item = erp.sets["A_PurchaseOrderItem"].rows[(order, "00010")]
        assert (item["Material"], item["Supplier"], item["IsCompletelyDelivered"]) == (unit.material, words[-3], False)
        assert lot not in qms.lots and (lot,) not in erp.sets["Batch"].rows

    assert qms.holds[client_hold.id].status == "ACTIVE", "the shift releases only holds QMS placed"
    for description in (d for d in done if d.startswith("released")):
        assert qms.holds[description.split()[1]].origin == "QMS"

    mes_events = Counter(e["type"] for e in apps["mes"].state.events.stats()["recent"])
    assert mes_events == {"production.completed": seen["produced"], "production.scrapped": seen["scrapped"]}
    wms_events = Counter(e["type"] for e in apps["wms"].state.events.stats()["recent"])
    assert wms_events == {"goods.received": seen["received"]}
    qms_events = Counter(e["type"] for e in apps["qms"].state.events.stats()["recent"])
    assert qms_events["inspection.completed"] == seen["inspected"]
    assert qms_events["nonconformance.opened"] == seen["opened"]
    assert qms_events["nonconformance.closed"] == seen["closed"]
    assert qms_events["hold.placed"] == seen["held"] + 1 and qms_events["hold.released"] == seen["released"]
    assert qms_events["lot.status_changed"] > 0

    inspected = [d for d in done if d.startswith("inspected")]
    rejected = [d for d in inspected if d.endswith("rejected")]
    assert 0 < len(rejected) < len(inspected) / 2, "most inspections pass, some fail"
    for description in inspected:
        inspection = qms.inspection_lots[description.split()[1]]
        assert inspection.usage_decision is not None
        assert (inspection.usage_decision.code == "R") == description.endswith("rejected")
        assert ({c.valuation for c in inspection.characteristics} == {"A"}) == description.endswith("accepted")


async def test_the_same_seed_makes_the_same_shift(small: Dataset) -> None:
    def shift(seed: int) -> list[str]:
        steps = Shift.for_apps(create_apps(small), seed=seed)
        return [steps.step() for _ in range(25)]

    assert shift(9) == shift(9)
    assert shift(9) != shift(10)
    assert {"produced", "received", "held"} <= set(kinds(shift(9) + shift(11)))


async def test_run_steps_until_cancelled(small: Dataset) -> None:
    apps = create_apps(small)
    running = asyncio.create_task(Shift.for_apps(apps, seed=1, interval_seconds=0.01).run())
    events = apps["mes"].state.events, apps["qms"].state.events, apps["wms"].state.events
    for _ in range(500):  # up to 5 s
        if sum(e.stats()["emitted"] for e in events) >= 5:
            break
        await asyncio.sleep(0.01)
    assert sum(e.stats()["emitted"] for e in events) >= 5, "the shift did not step"
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert running.cancelled()


async def test_given_a_supplier_incoming_quality_finds_defects_in_its_material(small: Dataset) -> None:
    """So the demo's supplier persona, subscribed to its own lots, sees the plant change too."""
    supplier = next(lot.supplier for lot in small.lots.values() if lot.supplier)
    apps = create_apps(small)
    shift = Shift.for_apps(apps, seed=3, supplier=supplier)
    done = [shift.step() for _ in range(STEPS)]
    found = [d for d in done if "on supplied lot" in d]
    assert found, done
    qms = apps["qms"].state.qms
    assert {qms.lots[d.split()[-1]].supplier for d in found} == {supplier}
    opened = Counter(e["type"] for e in apps["qms"].state.events.stats()["recent"])["nonconformance.opened"]
    assert opened == kinds(done)["opened"], "each is announced like any nonconformance"
    deliveries = [d.split() for d in done if d.startswith("received")]
    assert supplier in {words[-3] for words in deliveries}, "some deliveries come from the supplier"
    assert not [d for d in (Shift.for_apps(create_apps(small), seed=3).step() for _ in range(STEPS)) if "supplied" in d]
