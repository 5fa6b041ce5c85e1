"""The handler registry a stock agent serves: runtime handlers plus every
workload's. A workload adds one import and one ``update`` line here."""
from edgebed.device.handlers import HandlerRegistry
from edgebed.device.workloads import feel, runtime, split, tl


def default_handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.update(runtime.registry)
    registry.update(tl.registry)
    registry.update(feel.registry)
    registry.update(split.registry)
    return registry
