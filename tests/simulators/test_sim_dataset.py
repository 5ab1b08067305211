"""The generated plant: deterministic, the right shape, genealogy as specified, every system's state consistent."""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict

import pytest

from simulators import generate
from simulators.dataset import EPOCH, Dataset, QualityStatus

STOCK_TYPE = {"RELEASED": "01", "IN_INSPECTION": "02", "ON_HOLD": "07", "REJECTED": "07"}
WMS_STATUS = {"RELEASED": "AVAILABLE", "IN_INSPECTION": "QUARANTINE", "ON_HOLD": "BLOCKED", "REJECTED": "BLOCKED"}


def downstream(dataset: Dataset) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = defaultdict(list)
    for link in dataset.links:
        graph[link.consumed_lot].append(link.produced_lot)
    return graph


def closure(graph: dict[str, list[str]], start: str, depth: int = 6) -> set[str]:
    """Breadth-first: every lot reachable from `start` within `depth` links (excluding `start`)."""
    seen, frontier = {start}, [start]
    for _ in range(depth):
        frontier = [n for lot in frontier for n in graph.get(lot, ()) if n not in seen and not seen.add(n)]
    return seen - {start}


def test_same_seed_gives_the_same_plant(small: Dataset) -> None:
    assert generate(seed=7, lots=2000) == small


def test_another_seed_gives_another_plant(small: Dataset) -> None:
    other = generate(seed=8, lots=2000)
    assert len(other.lots) == len(small.lots)
    assert [lot.material for lot in other.lots.values()] != [lot.material for lot in small.lots.values()]
    assert other.links != small.links


def test_master_data_shape(small: Dataset) -> None:
    assert set(small.plants) == {"P100", "P200", "P300"}
    assert 180 <= len(small.materials) <= 220
    assert 30 <= len(small.suppliers) <= 50 and 20 <= len(small.customers) <= 30
    assert {m.tier for m in small.materials.values()} == set(range(7))
    assert {m.type for m in small.materials.values()} == {"ROH", "HALB", "FERT"}
    assert {m.unit for m in small.materials.values()} == {"KG", "L", "EA", "M"}
    regulated = sum(m.regulated for m in small.materials.values()) / len(small.materials)
    assert 0.2 <= regulated <= 0.45


def test_identifiers_are_unique_and_look_like_the_source_systems(small: Dataset) -> None:
    assert len(small.lots) == 2000
    assert all(re.fullmatch(r"B26\d{5}", lot_id) for lot_id in small.lots)
    assert all(re.fullmatch(r"(RM-1|SF-2|FG-3|SP-4)\d{4}", m) for m in small.materials)
    assert all(re.fullmatch(r"1\d{6}", o) for o in small.orders)
    assert all(re.fullmatch(r"0[14]\d{10}", i) for i in small.inspection_lots)
    assert all(re.fullmatch(r"NC-\d{6}", n) for n in small.nonconformances)
    assert all(re.fullmatch(r"QH-\d{6}", h) for h in small.holds)
    assert all(re.fullmatch(r"\d{18}", hu.id) for hu in small.handling_units)
    assert len({hu.id for hu in small.handling_units}) == len(small.handling_units)
    purchase_orders = [lot.purchase_order for lot in small.lots.values() if lot.tier == 0]
    assert all(po.startswith("45") and len(po) == 10 for po in purchase_orders)
    assert len(set(purchase_orders)) == len(purchase_orders)


def test_lots_are_received_or_produced(small: Dataset) -> None:
    produced = {link.produced_lot for link in small.links}
    for lot in small.lots.values():
        if lot.tier == 0:
            assert lot.supplier and lot.purchase_order and not lot.order_id and lot.id not in produced
        else:
            assert lot.order_id in small.orders and not lot.supplier and lot.id in produced
        assert bool(lot.customer) == (lot.tier == 6)


def test_genealogy_links_go_up_the_tiers_after_the_inputs_existed(small: Dataset) -> None:
    lots = small.lots
    for link in small.links:
        consumed, produced = lots[link.consumed_lot], lots[link.produced_lot]
        assert consumed.tier < produced.tier
        assert consumed.manufactured_at <= link.consumed_at <= produced.manufactured_at
        assert link.order_id == produced.order_id
        assert link.unit == consumed.unit and link.quantity > 0
    assert min(lot.manufactured_at for lot in lots.values()) >= EPOCH


def test_what_was_consumed_plus_what_remains_is_the_lot(small: Dataset) -> None:
    consumed: Counter[str] = Counter()
    links: Counter[str] = Counter()
    for link in small.links:
        consumed[link.consumed_lot] += link.quantity
        links[link.consumed_lot] += 1
    for lot in small.lots.values():
        if lot.tier == 6:  # distribution lots leave whole, by shipment
            assert lot.remaining in (0, lot.quantity) and not consumed[lot.id]
            continue
        rounding = 0.5 * (links[lot.id] + 1)  # pieces are whole numbers, so each share rounds
        assert consumed[lot.id] + lot.remaining == pytest.approx(lot.quantity, rel=1e-6, abs=rounding)


def test_genealogy_is_six_levels_deep(small: Dataset) -> None:
    upstream: dict[str, list[str]] = defaultdict(list)
    for link in small.links:
        upstream[link.produced_lot].append(link.consumed_lot)
    depth: dict[str, int] = {}
    for lot in sorted(small.lots.values(), key=lambda lot: lot.tier):
        depth[lot.id] = max((depth[parent] + 1 for parent in upstream[lot.id]), default=0)
    assert max(depth.values()) == 6


def test_recall_lot_is_the_raw_lot_reaching_most(small: Dataset) -> None:
    graph = downstream(small)
    sizes = {lot.id: len(closure(graph, lot.id)) for lot in small.lots.values() if lot.tier == 0}
    assert small.lots[small.recall_lot].tier == 0
    assert sizes[small.recall_lot] == max(sizes.values())


def test_typical_lot_has_a_small_genealogy(small: Dataset) -> None:
    graph = downstream(small)
    assert statistics.median(len(closure(graph, lot)) for lot in small.lots) <= 10


def test_recall_lot_reaches_half_the_default_plant(full: Dataset) -> None:
    assert len(full.lots) == 20_000
    assert full.lots[full.recall_lot].tier == 0
    assert len(closure(downstream(full), full.recall_lot)) >= 10_000


def test_quality_status_mix(small: Dataset) -> None:
    statuses = Counter(lot.quality_status for lot in small.lots.values())
    assert set(statuses) == set(QualityStatus)
    open_holds = {hold.lot for hold in small.holds.values() if hold.status == "ACTIVE"}
    assert 0.02 <= len(open_holds) / len(small.lots) <= 0.05
    assert open_holds == {lot.id for lot in small.lots.values() if lot.quality_status == "ON_HOLD"}
    rejected = {lot.id for lot in small.lots.values() if lot.quality_status == "REJECTED"}
    decisions = {i.lot: i.usage_decision for i in small.inspection_lots.values()}
    assert all(decisions[lot].code == "R" for lot in rejected)


def test_a_few_percent_of_lots_diverge_in_exactly_one_system(small: Dataset) -> None:
    assert 0.005 <= len(small.divergent) / len(small.lots) <= 0.06
    per_lot = Counter(lot for _, lot in small.stale)
    assert set(per_lot) == set(small.divergent) and set(per_lot.values()) == {1}
    for (system, lot), shown in small.stale.items():
        assert system in ("erp", "wms", "mes")
        assert shown != small.lots[lot].quality_status
        assert small.status_in(system, lot) == shown and small.status_in("qms", lot) == small.lots[lot].quality_status


def test_stock_follows_remaining_quantity_and_status(small: Dataset) -> None:
    rows = {row.lot: row for row in small.stock}
    units: dict[str, list] = defaultdict(list)
    for hu in small.handling_units:
        units[hu.lot].append(hu)
    for lot in small.lots.values():
        if lot.remaining <= 0:
            assert lot.id not in rows and lot.id not in units
            continue
        assert rows[lot.id].quantity == lot.remaining
        assert rows[lot.id].stock_type == STOCK_TYPE[small.status_in("erp", lot.id)]
        assert sum(hu.quantity for hu in units[lot.id]) == pytest.approx(lot.remaining)
        assert {hu.status for hu in units[lot.id]} == {WMS_STATUS[small.status_in("wms", lot.id)]}
    shipped = [lot for lot in small.lots.values() if lot.tier == 6 and lot.remaining == 0]
    assert shipped, "most distribution lots have left the plant"


def test_material_documents_record_receipts_and_issues(small: Dataset) -> None:
    by_type: dict[str, set[str]] = defaultdict(set)
    for item in small.material_documents:
        by_type[item.movement_type].add(item.lot)
    assert by_type["101"] == set(small.lots)
    assert by_type["261"] == {link.consumed_lot for link in small.links}
    assert by_type["350"] == {lot for lot in small.lots if small.status_in("erp", lot) == "REJECTED"}
