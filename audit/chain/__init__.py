"""Tamper evidence for the audit trail: hash chains, a sealer, signed checkpoints.

Shape, and why:

- Each audited table (security events, access events, rule decisions, auditlog's log
  entries) has its own chain, in primary-key order: link n holds
  `sha256(link n-1 || canonical row)`. The links live in `ChainLink`, not on the rows, so
  PostgreSQL can refuse every UPDATE and DELETE of an audit row without exception.
- The request path does not chain. Access events are bulk-inserted at the end of each
  request; hashing them there would need a global lock on the chain head and serialise
  every request. A sealer (`chain_seal`, a Celery beat task every few seconds and again at
  each checkpoint) chains new rows shortly after they commit. It is the only writer of
  `ChainLink`, and a PostgreSQL advisory lock keeps two sealers from racing.
- Rows can commit out of primary-key order (a transaction that took id 7 may commit after
  the one that took id 8). The sealer stops at a gap in the ids until the row after it is
  `AUDIT_SEAL_GRACE_SECONDS` old; a gap still open then is a rolled-back insert. A row that
  appears in a gap later than that is not in the chain, and `verify_audit` reports it.
- Every minute a checkpoint (each chain's length, last row id and head, and the time) is
  signed with an Ed25519 key and appended to a JSON-lines file outside the database. An
  attacker who rewrites rows *and* recomputes the links after them still cannot produce a
  head that matches a signed checkpoint.
"""
