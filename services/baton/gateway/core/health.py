"""The ledger's health is part of the control contract, so its value lives in the model
(``baton.model.LedgerHealth``, converted by ``baton.wire``); the gateway's modules name it here."""

from baton.model import LedgerHealth as LedgerHealth
