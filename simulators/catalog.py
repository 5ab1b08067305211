"""Master and reference data of the simulated plant: plants, materials with their BOMs, partners, and the
vocabularies (characteristics, routings, hold reasons ...) that lots and quality records are drawn from."""

from __future__ import annotations

import random

from simulators.records import Customer, Material, Plant, Supplier

PLANTS = (
    Plant("P100", "Werk Hamburg", "DE", "Hamburg"),
    Plant("P200", "Usine de Lyon", "FR", "Lyon"),
    Plant("P300", "Cork Plant", "IE", "Cork"),
)
PLANTS_BY_ID = {p.id: p for p in PLANTS}
WAREHOUSES = {"P100": "WH10", "P200": "WH20", "P300": "WH30"}
MATERIALS_PER_TIER = (70, 20, 20, 20, 20, 25, 25)
# Bulk raw materials, the first four raw materials, and how often a produced material's BOM contains each:
# they are what lets one raw lot reach most of the plant.
BULK = (
    ("Purified water", "L"),
    ("Microcrystalline cellulose", "KG"),
    ("Lactose monohydrate", "KG"),
    ("Ethanol 96%", "L"),
)
BULK_USE = (0.9, 0.45, 0.3, 0.2)
CHEMICALS = (
    "Magnesium stearate",
    "Croscarmellose sodium",
    "Povidone K30",
    "Hypromellose",
    "Talc",
    "Titanium dioxide",
    "Silicon dioxide colloidal",
    "Sodium starch glycolate",
    "Mannitol",
    "Maize starch",
    "Stearic acid",
    "Iron oxide yellow",
    "Macrogol 6000",
    "Polysorbate 80",
    "Sodium chloride",
    "Citric acid",
    "Calcium phosphate",
    "Sucrose",
    "Glycerol",
    "Isopropanol",
)
ACTIVES = (
    "Amlodipine besilate",
    "Metformin HCl",
    "Atorvastatin calcium",
    "Ibuprofen",
    "Paracetamol",
    "Omeprazole",
    "Losartan potassium",
    "Simvastatin",
    "Levothyroxine sodium",
    "Lisinopril",
)
GRADES = ("Ph. Eur.", "USP", "NF", "JP")
PACKAGING = (
    ("Blister foil alu 20 um", "M"),
    ("PVC/PVDC film 250 um", "M"),
    ("Folding carton", "EA"),
    ("Patient leaflet", "EA"),
    ("Label 40x60", "EA"),
    ("HDPE bottle 100 ml", "EA"),
    ("Child-resistant cap", "EA"),
    ("Shipping carton", "EA"),
)
STAGES = ("Premix", "Granulate", "Final blend", "Coated core")
STRENGTHS = ("5 mg", "10 mg", "20 mg", "40 mg", "50 mg", "100 mg", "200 mg", "500 mg")
NAME_PARTS = (
    ("Nord", "Alpen", "Rhein", "Baltic", "Atlas", "Helix", "Vector", "Orion", "Delta", "Summit"),
    ("chem", "pharm", "pack", "bio", "synth", "lab", "med", "source"),
    ("GmbH", "SA", "Ltd", "AG", "S.p.A.", "B.V.", "Inc."),
)
COUNTRIES = ("DE", "FR", "IE", "IT", "NL", "CH", "BE", "ES", "IN", "CN", "US", "PL")
CITIES = (
    "Berlin",
    "Paris",
    "Dublin",
    "Milan",
    "Rotterdam",
    "Basel",
    "Antwerp",
    "Madrid",
    "Vienna",
    "Warsaw",
    "Prague",
    "Lisbon",
    "Copenhagen",
    "Oslo",
    "Zurich",
)
CHARACTERISTICS = (  # code, description, unit, lower, upper
    ("ASSAY", "Assay", "%", 98.0, 102.0),
    ("WATER", "Water content (KF)", "%", 0.0, 0.5),
    ("PH", "pH (1% solution)", "", 6.0, 7.5),
    ("DENS", "Bulk density", "g/ml", 0.45, 0.65),
    ("PSD", "Particle size d50", "um", 60.0, 140.0),
    ("MICRO", "Total aerobic count", "cfu/g", 0.0, 100.0),
    ("HARD", "Tablet hardness", "N", 60.0, 120.0),
    ("DISS", "Dissolution 30 min", "%", 80.0, 100.0),
    ("MASS", "Uniformity of mass", "%", -5.0, 5.0),
    ("LEAK", "Seal integrity leak rate", "mbar/s", 0.0, 0.01),
)
ROUTINGS = (  # operations per tier: description, work center prefix
    (),
    (("Dispensing", "DISP"), ("Premixing", "BLND")),
    (("Wet granulation", "GRAN"), ("Fluid-bed drying", "DRY"), ("Milling", "MILL")),
    (("Final blending", "BLND"), ("Sieving", "SIEV")),
    (("Compression", "COMP"), ("Film coating", "COAT"), ("Visual inspection", "INSP")),
    (("Blister packaging", "PACK"), ("Serialisation", "SERI"), ("Cartoning", "CART")),
    (("Pick and pack", "SHIP"), ("Labelling", "LABL")),
)
HOLD_REASONS = (
    ("DEV", "Deviation under investigation"),
    ("CMP", "Customer complaint"),
    ("SUP", "Supplier quality notification"),
    ("OOS", "Out-of-specification result"),
    ("ENV", "Environmental monitoring excursion"),
)
NC_CATEGORIES = (
    "Out of specification",
    "Contamination",
    "Labelling error",
    "Documentation gap",
    "Equipment malfunction",
    "Supplier defect",
)
USERS = ("QA.MUELLER", "QA.DUBOIS", "QA.MURPHY", "QA.SCHMIDT", "QA.MARTIN", "QA.KELLY")
STORAGE_LOCATIONS = ("RM01", "WP01", "WP01", "WP01", "WP01", "FG01", "FG01")
ZONES = ("RM", "WIP", "WIP", "WIP", "WIP", "FG", "SHIP")


def _company(rng: random.Random, used: set[str]) -> str:
    while True:
        first, second, form = (rng.choice(part) for part in NAME_PARTS)
        name = f"{first}{second} {form}"
        if name not in used:
            used.add(name)
            return name


def partners(rng: random.Random) -> tuple[dict[str, Supplier], dict[str, Customer]]:
    """About 40 suppliers and 25 customers with distinct names."""
    used: set[str] = set()
    suppliers = [Supplier(f"{17300001 + n}", _company(rng, used), rng.choice(COUNTRIES)) for n in range(40)]
    customers = [
        Customer(f"{10100001 + n}", _company(rng, used), rng.choice(COUNTRIES), rng.choice(CITIES)) for n in range(25)
    ]
    return {s.id: s for s in suppliers}, {c.id: c for c in customers}


def _raw_materials(rng: random.Random) -> list[tuple[str, str, str]]:
    """Descriptions, units and product groups of the raw materials, bulk ones first."""
    names = [(name, unit, "RM-BULK") for name, unit in BULK]
    names += [(f"{name} micronised", "KG", "RM-API") for name in ACTIVES]
    names += [(name, unit, "RM-PACK") for name, unit in PACKAGING]
    excipients = [f"{name} {grade}" for name in CHEMICALS for grade in GRADES]
    rng.shuffle(excipients)
    needed = MATERIALS_PER_TIER[0] - len(names)
    return names + [(name, rng.choice(("KG", "KG", "L")), "RM-EXC") for name in excipients[:needed]]


def _bom(rng: random.Random, tier: int, by_tier: list[list[Material]]) -> tuple[str, ...]:
    """One main component from the tier below (a non-bulk raw material for tier 1), sometimes a second
    intermediate, one or two raw additives, and the bulk materials by their usage share."""
    additives = [m.id for m in by_tier[0] if not m.bulk]
    main = rng.choice(by_tier[tier - 1]).id if tier > 1 else rng.choice(additives)
    components = [main]
    if tier > 1 and rng.random() < 0.35:
        components.append(rng.choice(by_tier[rng.choice((tier - 1, max(1, tier - 2)))]).id)
    components += rng.sample(additives, rng.randint(1, 2))
    bulk = [m.id for m in by_tier[0] if m.bulk]
    components += [b for b, share in zip(bulk, BULK_USE, strict=True) if rng.random() < share]
    return tuple(dict.fromkeys(components))


def materials(rng: random.Random) -> dict[str, Material]:
    """About 200 materials in seven tiers: raw, four intermediate stages, finished goods, shipper packs."""
    by_tier: list[list[Material]] = [[] for _ in MATERIALS_PER_TIER]
    for n, (description, unit, group) in enumerate(_raw_materials(rng)):
        by_tier[0].append(
            Material(
                id=f"RM-{10001 + n}",
                type="ROH",
                tier=0,
                description=description,
                unit=unit,
                group=group,
                regulated=rng.random() < 0.33,
                price=round(rng.uniform(0.5, 400.0), 2),
                currency="EUR",
                plant="",
                shelf_life_days=rng.choice((720, 1080, 1440)),
                bulk=group == "RM-BULK",
                bom=(),
            )
        )
    products = [f"{active.split()[0]} {rng.choice(STRENGTHS)}" for active in ACTIVES for _ in range(3)]
    serial = 20001
    for tier in range(1, 6):
        for n in range(MATERIALS_PER_TIER[tier]):
            product = products[n % len(products)]
            if tier < 5:
                stage = STAGES[tier - 1]
                ident, kind, description = f"SF-{serial}", "HALB", f"{product} {stage.lower()}"
                unit, group = rng.choice(("KG", "KG", "L")), f"SF-{stage.upper().replace(' ', '')}"
                serial += 1
            else:
                ident, kind, description = f"FG-{30001 + n}", "FERT", f"{product} film-coated tablets, 30 pcs"
                unit, group = "EA", "FG-TABLETS"
            by_tier[tier].append(
                Material(
                    id=ident,
                    type=kind,
                    tier=tier,
                    description=description,
                    unit=unit,
                    group=group,
                    regulated=rng.random() < 0.33,
                    price=round(rng.uniform(5.0, 900.0), 2),
                    currency="EUR",
                    plant=rng.choice(PLANTS).id,
                    shelf_life_days=rng.choice((720, 1080)),
                    bulk=False,
                    bom=_bom(rng, tier, by_tier),
                )
            )
    for n, finished in enumerate(by_tier[5]):  # each finished good also ships in a shipper of 48
        by_tier[6].append(
            Material(
                id=f"SP-{40001 + n}",
                type="FERT",
                tier=6,
                description=f"{finished.description}, shipper of 48",
                unit="EA",
                group="FG-SHIPPERS",
                regulated=finished.regulated,
                price=round(finished.price * 48, 2),
                currency="EUR",
                plant=finished.plant,
                shelf_life_days=finished.shelf_life_days,
                bulk=False,
                bom=(finished.id,),
            )
        )
    return {m.id: m for tier in by_tier for m in tier}
