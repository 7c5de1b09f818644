"""The operator's pure core: the StrategyVersion spec (``spec``), the rollout state machine
(``rollout``: ``decide(Observed) -> Decision``), the facts it is fed and the status it writes
(``facts``), the strategy pod's manifest (``pods``), the RBAC rules (``rbac``) and the
configuration (``config``). No kopf, no Kubernetes client, no gRPC.

Beside this package: ``handlers`` (kopf), ``observe`` (reads the cluster and the gateway),
``executor`` (carries decisions out), ``kube`` (the API client) and ``cli``. import-linter keeps
the split (``make imports``).
"""
