"""Typed command contracts, one module per workload, imported by both ends.

``base`` holds the machinery (strict ``from_args``, ``CommandSpec``, run-scoped
keys); ``runtime`` the commands every agent serves; ``tl``, ``feel``,
``split`` and ``placement`` one workload each. Device-safe: Python 3.8, no
server imports."""
