"""The gateway's pure core: decisions and data, no I/O, no wire, no clock reads.

``clock`` (the slot schedule), ``router`` (roles, epochs, fencing, which answer counts),
``market`` (the candle book), ``venue`` (paper UP/DOWN bets and their settlement), ``records``
(what the ledger stores), ``health`` (the ledger's health value), ``handoff`` (the handoff
state machine) and ``binance`` (the exchange's frames and REST rows, parsed). Each takes the
time and the inputs it needs as arguments and returns its decision; the modules beside this
package (``app``, ``server``, ``connection``, ``coordinator``, ``exchange``, ``ledger``,
``metrics``) do the sockets, SQLite, gRPC and timers. import-linter keeps it so (``make imports``).
"""
