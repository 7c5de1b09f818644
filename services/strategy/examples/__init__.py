"""Example strategies: two versions of the reference momentum strategy, and a faulty one.

- ``baton.strategy.examples.momentum_v1:MomentumV1`` (state_schema 1)
- ``baton.strategy.examples.momentum_v2:MomentumV2`` (state_schema 2, migrates v1 state)
- ``baton.strategy.examples.faulty:Faulty`` (raises / stalls on demand, for tests)
"""
