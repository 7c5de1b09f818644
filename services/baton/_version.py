"""Baton: zero-gap blue/green deploys for a live trading bot.

Subpackages: ``gateway`` (market gateway), ``strategy`` (strategy host and SDK),
``exchange_sim`` (Binance-wire-compatible simulator), ``operator`` (Kubernetes operator),
``model`` (domain data shared by all), ``v1`` (generated gRPC contract).
"""

__version__ = "0.1.0"
