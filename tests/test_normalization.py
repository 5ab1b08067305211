"""Plant P100 speaks numeric QMS codes, P200 text labels: the graph shows one canonical vocabulary."""

from __future__ import annotations

import httpx2

from simulators import Dataset
from tests.conftest import Gateway, Plant

STATUSES = ("RELEASED", "REJECTED", "IN_INSPECTION", "ON_HOLD")


def _sample(dataset: Dataset, plant: str) -> list[str]:
    """A few undiverged lots of each true status at one plant."""
    picked: list[str] = []
    for status in STATUSES:
        picked += [
            lot.id
            for lot in dataset.lots.values()
            if lot.plant == plant and lot.quality_status == status and lot.id not in dataset.divergent
        ][:3]
    return picked


def test_p100_codes_and_p200_labels_normalize_alike(gateway: Gateway, plant: Plant, dataset: Dataset) -> None:
    raw = {}
    canonical = {}
    for plant_id in ("P100", "P200"):
        lot_ids = _sample(dataset, plant_id)
        native = httpx2.get(f"{plant.url('qms')}/api/v1/lots", params={"ids": ",".join(lot_ids)}).json()["items"]
        raw[plant_id] = {item["status"] for item in native}
        query = (
            "{ "
            + " ".join(
                f'l{i}: lot(id: "{lot_id}") {{ id qualityStatus inspections {{ status }} holds {{ status }} }}'
                for i, lot_id in enumerate(lot_ids)
            )
            + " }"
        )
        lots = gateway.data(query).values()
        for lot in lots:
            assert lot["qualityStatus"] == dataset.lots[lot["id"]].quality_status
        canonical[plant_id] = {lot["qualityStatus"] for lot in lots}
        for lot in lots:
            assert all(i["status"] in {"CREATED", "RESULTS_RECORDED", "DECIDED"} for i in lot["inspections"])
            assert all(h["status"] in {"ACTIVE", "RELEASED"} for h in lot["holds"])
    assert all(str(code).isdigit() for code in raw["P100"]), raw["P100"]
    assert not any(str(code).isdigit() for code in raw["P200"]), raw["P200"]
    assert canonical["P100"] == canonical["P200"] == set(STATUSES)
