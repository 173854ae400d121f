"""Development tooling, not shipped in the product's wheel: the benchmarks (``wanli bench …``), fault
injection (``wanli chaos …``) and the local servers the tests and benchmarks start.

It is its own distribution (``tooling/pyproject.toml``, installed by ``scripts/test``); its commands join
the ``wanli`` CLI through the ``wanli.commands`` entry points. It may import every layer of the product;
nothing in the product imports it (docs/layers.md).
"""
