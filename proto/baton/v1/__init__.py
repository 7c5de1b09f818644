"""The gRPC contract of Baton, generated from ``proto/baton/v1/*.proto`` by ``hack/codegen.sh``.

Only ``baton.wire`` imports these modules: business logic works on the dataclasses of
``baton.model`` and converts at the edge.
"""
