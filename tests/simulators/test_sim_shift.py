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
    done = [shift.step() for _ in range(STEPS)]
    seen = kinds(done)
    assert set(seen) <= {"produced", "inspected", "opened", "closed", "scrapped"}, seen
    assert seen["produced"] >= STEPS // 5 and seen["inspected"] >= STEPS // 5, seen
    assert seen["opened"] + seen["closed"] + seen["scrapped"] > 0, seen

    mes, qms, erp = apps["mes"].state.mes, apps["qms"].state.qms, apps["erp"].state.erp
    made = [d.split()[1] for d in done if d.startswith("produced")]
    assert made == [f"B26{len(small.lots) + n:05d}" for n in range(1, len(made) + 1)]
    assert all(mes.lots[lot]["status"] == "QC_PENDING" and lot in qms.lots for lot in made)
    assert {(lot,) for lot in made} <= erp.sets["Batch"].rows.keys()
    assert erp.last_change > len(made), "every production posts a receipt and its issues"

    mes_events = Counter(e["type"] for e in apps["mes"].state.events.stats()["recent"])
    assert mes_events == {"production.completed": seen["produced"], "production.scrapped": seen["scrapped"]}
    qms_events = Counter(e["type"] for e in apps["qms"].state.events.stats()["recent"])
    assert qms_events["inspection.completed"] == seen["inspected"]
    assert qms_events["nonconformance.opened"] == seen["opened"]
    assert qms_events["nonconformance.closed"] == seen["closed"]
    assert 0 < qms_events["lot.status_changed"] <= seen["inspected"]

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


async def test_run_steps_until_cancelled(small: Dataset) -> None:
    apps = create_apps(small)
    running = asyncio.create_task(Shift.for_apps(apps, seed=1, interval_seconds=0.01).run())
    events = apps["mes"].state.events, apps["qms"].state.events
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
    assert not [d for d in (Shift.for_apps(create_apps(small), seed=3).step() for _ in range(STEPS)) if "supplied" in d]
