"""The strategy SDK's core: the ``Strategy`` base class (``strategy``), state encoding, digests
and migrations (``state``), the errors (``errors``) and the runtime that drives a strategy
through evaluations, fills, settlements, exports and imports (``runtime``). No gRPC, no sockets.

Strategy authors import the SDK from ``baton.strategy`` (``sdk``); ``host`` beside this package
attaches a runtime to the gateway over gRPC. import-linter keeps the split (``make imports``).
"""
