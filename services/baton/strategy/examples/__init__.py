"""Example strategies: two versions of the reference momentum strategy, and a faulty one.

- ``baton.strategy.examples.momentum_v1:MomentumV1`` (state_schema 1, reads schema 2 back)
- ``baton.strategy.examples.momentum_v2:MomentumV2`` (state_schema 2, migrates v1 state)
- ``baton.strategy.examples.faulty:Faulty`` and ``:FaultyV2`` (raise, stall, crash, answer a
  wrong epoch or fail an import on demand, for fault tests)
"""
