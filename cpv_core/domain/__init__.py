"""The values and rules cpv reasons about (versions, names, metrics, records, stage rules,
kinds, artifacts, cost, backoff): no I/O, and no import of any other floor."""
