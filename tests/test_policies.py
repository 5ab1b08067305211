"""The Cedar policy set: every data-driven case holds, broken policy sets are refused, the CLI reports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policies import entities
from policies.engine import POLICY_DIR, PolicyEngine, PolicyError, Request
from policies.testing import load_cases, run

ENGINE = PolicyEngine()
CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.file}:{c.name}" for c in CASES])
def test_policy_case(case) -> None:  # type: ignore[no-untyped-def]
    (outcome,) = run(ENGINE, [case])
    assert outcome.passed, outcome.describe()


def test_every_policy_has_an_id_and_a_reason() -> None:
    assert len({p.id for p in ENGINE.policies}) == len(ENGINE.policies) > 0
    assert all("reason" in p.annotations for p in ENGINE.policies)


def _policy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__", "tests"))
    return target


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("permit (principal, action, resource);", "@id"),
        ('@id("bad-attr")\npermit (principal, action == Lotgraph::Action::"readLot", resource)\n'
         "when { resource.colour == \"red\" };", "schema"),
        ('@id("internal-roles-read-their-plants")\npermit (principal, action, resource);', "twice"),
    ],
    ids=["missing-id", "unknown-attribute", "duplicate-id"],
)  # fmt: skip
def test_broken_policy_sets_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    directory = _policy_copy(tmp_path)
    (directory / "zz-extra.cedar").write_text(text + "\n")
    with pytest.raises(PolicyError, match=problem):
        PolicyEngine(directory)


def test_content_hash_changes_with_any_policy(tmp_path: Path) -> None:
    directory = _policy_copy(tmp_path)
    assert PolicyEngine(directory).content_hash == ENGINE.content_hash
    reads = directory / "reads.cedar"
    reads.write_text(reads.read_text().replace("Internal roles read", "Internal roles may read"))
    assert PolicyEngine(directory).content_hash != ENGINE.content_hash


def test_cli_runs_the_cases() -> None:
    lotgraph = Path(sys.executable).parent / "lotgraph"
    completed = subprocess.run([str(lotgraph), "policy", "test"], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"{len(CASES)} passed, 0 failed" in completed.stdout


def test_batched_decisions_equal_one_by_one_even_when_a_policy_names_a_lot(tmp_path: Path) -> None:
    from policies import entities
    from policies.engine import Request

    directory = _policy_copy(tmp_path)
    (directory / "zz-recall.cedar").write_text(
        '@id("quarantined-lot")\n@reason("This lot is under investigation.")\n'
        'forbid (principal, action == Lotgraph::Action::"readLot", resource == Lotgraph::Lot::"B1");\n'
    )
    engine = PolicyEngine(directory)
    reader = entities.user("pat", ["portal_reader"], ["*"])
    lots = [entities.lot(lot_id, plant="P100", material="M") for lot_id in ("B1", "B2", "B3")]
    batched = engine.decide_all([Request(reader, "readLot", lot, {}) for lot in lots])
    assert batched == [engine.decide(Request(reader, "readLot", lot, {})) for lot in lots]
    assert [d.allowed for d in batched] == [False, True, True]
    assert batched[0].policy_ids == ("quarantined-lot",)


def test_a_remembered_decision_answers_only_the_same_caller_about_the_same_kind_of_lot() -> None:
    """Decisions are remembered across batches: asked again, in another order, each caller still gets its own."""
    engine = PolicyEngine()
    p100 = entities.user("reader-p100", ["quality_engineer"], ["P100"])
    p200 = entities.user("reader-p200", ["quality_engineer"], ["P200"])
    supplier = entities.user("supplier-s1", ["supplier"], [], supplier="S1")
    lots = [entities.lot("L1", plant="P100", material="M1"), entities.lot("L2", plant="P200", material="M1"),
            entities.lot("L3", plant="P100", material="M1", supplier="S1")]  # fmt: skip
    expected = {p100.id: [True, False, True], p200.id: [False, True, False], supplier.id: [False, False, True]}
    for callers in ([p100, p200, supplier], [supplier, p200, p100], [p200, p100, supplier]):
        for caller in callers:
            decided = engine.decide_all([Request(caller, "readLot", lot, {}) for lot in lots])
            assert [d.allowed for d in decided] == expected[caller.id], caller.id
