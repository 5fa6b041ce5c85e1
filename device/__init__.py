"""The device agent: session loop, handler registry, hardware probe, power
meters and emulation knobs (CPU quota, link profile). Runs on Python 3.8."""
