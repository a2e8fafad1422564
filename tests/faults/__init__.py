"""The fault suite (issue 10): the daemon under a hostile environment, each scenario checked
against the same invariants (tests/faults/invariants.py)."""
