"""The plant's workflows: what lotgraph does when a system reports an event, one module per workflow.

Each workflow is a handler of the event types it reacts to (`Workflow.reacts_to`). It decides nothing itself:
it asks the governed operations service (`gateway.operations.service.Operations.automate`) to run an operation
as its service principal, keyed by the event, so Cedar decides, the decision is audited with the event, and the
steps are recorded, retried and resumed like any hold's. `registry.install` registers the enabled ones on the event hub.
"""
