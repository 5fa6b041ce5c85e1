"""The handler registry a stock agent serves: every workload's handlers, as
the workload registry (``edgebed.workloads``) lists them."""
import importlib

from edgebed.device.handlers import HandlerRegistry
from edgebed.workloads import WORKLOADS


def default_handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    for workload in WORKLOADS:
        registry.update(importlib.import_module(workload.device_module).registry)
    return registry
