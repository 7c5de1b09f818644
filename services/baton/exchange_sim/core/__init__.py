"""The simulator's sans-I/O core: the Binance wire protocol as pure functions (``protocol``),
seeded price paths (``prices``), candles from them (``candles``), fault injection (``faults``),
the scaled clock (``clock``) and the configuration (``config``).

``server`` beside this package is the only module that opens sockets (websockets' server, the
REST endpoints); import-linter keeps it so (``make imports``).
"""
