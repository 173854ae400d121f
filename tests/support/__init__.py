"""Helpers the tests share, written once.

- ``rules``: the rules' world in miniature (``RuleWorld``, ``rule_context``) and ``run_rule``;
- ``readings``: ``reading()``, a decoded reading as ingest hands it to the rules and stores;
- ``waiting``: ``wait_for`` (the value, or fail) and ``wait_until`` (true or false) for polling.
"""
