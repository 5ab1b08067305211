"""The security team's view: the policy set with its hash, dry-run decisions, and who may see them."""

from __future__ import annotations

from policies.engine import PolicyEngine
from tests.conftest import Gateway

EXPLAIN = """query($action: String!, $roles: [String!]!, $context: JSON) {
  explainAuthorization(principal: {sub: "qp", roles: $roles, plants: ["*"]}, action: $action,
                       resource: {plant: "P100", regulated: true, holdPlacers: ["qp"]}, context: $context) {
    allowed policyIds reasons explanation } }"""
SIGNED = {
    "mfa": True,
    "authAgeSeconds": 10,
    "justified": True,
    "latestInspectionPassed": True,
    "openNonconformances": 0,
}


def test_auditor_reads_the_policy_set_with_its_content_hash(gateway: Gateway) -> None:
    result = gateway.data(
        "{ policies { contentHash policies { id effect file annotations text } } }", token=gateway.token("auditor")
    )["policies"]
    engine = PolicyEngine()
    assert result["contentHash"] == engine.content_hash
    assert {p["id"] for p in result["policies"]} == {p.id for p in engine.policies}
    four_eyes = next(p for p in result["policies"] if p["id"] == "four-eyes-on-regulated-material")
    assert four_eyes["effect"] == "forbid" and "holdPlacers" in four_eyes["text"]
    assert four_eyes["annotations"]["reason"].startswith("Regulated material")


def test_explain_authorization_names_the_deciding_policies(gateway: Gateway) -> None:
    auditor = gateway.token("auditor")
    denied = gateway.data(
        EXPLAIN, {"action": "releaseQualityHold", "roles": ["qa_manager"], "context": SIGNED}, token=auditor
    )["explainAuthorization"]
    assert denied["allowed"] is False and denied["policyIds"] == ["four-eyes-on-regulated-material"]
    allowed = gateway.data(EXPLAIN, {"action": "readLot", "roles": ["portal_reader"]}, token=auditor)
    assert allowed["explainAuthorization"]["policyIds"] == ["internal-roles-read-their-plants"]
    bad = gateway.execute(EXPLAIN, {"action": "launchRocket", "roles": ["qa_manager"]}, token=auditor)
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_governance_is_for_auditors_only(gateway: Gateway) -> None:
    for query in ("{ policies { contentHash } }", "{ auditLog { entries { seq } } }"):
        result = gateway.execute(query, token=gateway.token("qa_manager"))
        assert result["errors"][0]["extensions"]["code"] == "FORBIDDEN", query
        assert result["errors"][0]["extensions"]["policyIds"] == []
