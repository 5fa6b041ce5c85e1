"""Benchmark suites behind ``edgebed-bench SUITE``; each writes results/<suite>/<run-id>/."""
