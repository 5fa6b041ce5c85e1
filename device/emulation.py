"""The agent's ``--link PROFILE`` option: one string -> a :class:`LinkProfile`.

Accepted forms (case-insensitive, whitespace ignored):

- ``none`` or empty: unshaped (both rates 0).
- one rate for both directions: ``10Mbit``, ``10mbps``, ``500kbit``, ``1gbit``,
  ``2.5e6`` (bare numbers are bit/s).
- per direction: ``up=10Mbit,down=50Mbit`` (a missing direction stays unshaped).
- radio: ``distance=150m,power=0.2W,bandwidth=1MHz`` (aliases ``d=``, ``p=``,
  ``w=``; power also as ``23dBm`` or ``200mW``; distance also in ``km``).
  Both rates come from :class:`WirelessLink` with path loss only (no fading)
  and the radio parameters stay in the profile so the server's solvers see
  them. ``up=``/``down=`` next to radio keys override the computed rate.

Rates are always *bits* per second and prefixes are decimal (k = 1e3). Unlike
``tc``, ``mbps`` means megabits here, because that is what people type on a
command line; units that say bytes (``MB``, ``MBps``, ``MB/s``) are refused
rather than guessed.
"""
from __future__ import annotations

import logging
import math
import re

from edgebed.proto.link_model import WirelessLink, dbm_to_w
from edgebed.proto.records import MIN_RATE_BPS, LinkProfile

logger = logging.getLogger(__name__)

ACCEPTED_FORMS = (
    "'none', a rate like '10Mbit', '10mbps', '500kbit', '1gbit', '2.5e6' (bit/s), "
    "'up=10Mbit,down=50Mbit', or 'distance=150m,power=0.2W,bandwidth=1MHz' "
    "(also d=, p=, w=; power in W, mW or dBm)"
)

_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_QUANTITY = re.compile(r"^(" + _NUMBER + r")\s*([A-Za-z/]*)$")
_PREFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
# What may follow the SI prefix of a rate (after lower-casing).
_BIT_SUFFIXES = ("", "b", "bit", "bits", "bps", "bit/s", "bits/s", "b/s")

_KEY_ALIASES = {
    "up": "up", "uplink": "up", "u": "up",
    "down": "down", "downlink": "down",
    "distance": "distance", "d": "distance",
    "power": "power", "p": "power",
    "bandwidth": "bandwidth", "w": "bandwidth", "bw": "bandwidth",
}
_RADIO_KEYS = ("distance", "power", "bandwidth")


def _bad(token: str, why: str = "") -> ValueError:
    detail = f" ({why})" if why else ""
    return ValueError(f"bad link profile token {token!r}{detail}; accepted forms: {ACCEPTED_FORMS}")


def _split_quantity(token: str) -> tuple[float, str]:
    match = _QUANTITY.match(token)
    if match is None:
        raise _bad(token, "expected a number with an optional unit")
    value = float(match.group(1))
    if not math.isfinite(value):
        raise _bad(token, "not a finite number")
    return value, match.group(2)


def parse_rate(token: str) -> float:
    """``"10Mbit"`` -> 1e7 bit/s. Positive, bits, decimal prefixes."""
    value, unit = _split_quantity(token)
    # A capital B right after the prefix says bytes ("MB", "MBps"); refuse it
    # instead of silently being off by a factor of eight. "MBit" is fine.
    rest = unit[1:] if unit[:1].lower() in _PREFIX and unit[:1] else unit
    if rest.startswith("B") and rest.lower() not in ("bit", "bits", "bit/s", "bits/s"):
        raise _bad(token, "byte units are ambiguous; give bits, e.g. '10Mbit' or '10mbps'")
    lowered = unit.lower()
    prefix = lowered[:1] if lowered[:1] in _PREFIX and lowered[:1] else ""
    suffix = lowered[len(prefix):]
    if suffix not in _BIT_SUFFIXES:
        raise _bad(token, f"unknown rate unit {unit!r}")
    if value <= 0:
        raise _bad(token, "a rate must be positive; use 'none' for an unshaped link")
    return _finite(token, value * _PREFIX[prefix])


def _parse_scaled(token: str, units: dict[str, float], what: str) -> float:
    value, unit = _split_quantity(token)
    scale = units.get(unit.lower())
    if scale is None:
        known = ", ".join(repr(u) for u in units if u)
        raise _bad(token, f"unknown {what} unit {unit!r}; use {known}")
    if value <= 0:
        raise _bad(token, f"{what} must be positive")
    return _finite(token, value * scale)


def _finite(token: str, value: float) -> float:
    """``value`` once its unit is applied: 1e300Gbit overflows to infinity."""
    if not math.isfinite(value):
        raise _bad(token, "too large: not a finite number in its unit")
    return value


def parse_distance_m(token: str) -> float:
    return _parse_scaled(token, {"": 1.0, "m": 1.0, "km": 1e3}, "distance")


def parse_bandwidth_hz(token: str) -> float:
    return _parse_scaled(token, {"": 1.0, "hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9},
                         "bandwidth")


def parse_power_w(token: str) -> float:
    """``"0.2W"``, ``"200mW"``, ``"23dBm"``; only dBm may be zero or negative."""
    if token.lower().endswith("dbm"):
        sign = -1.0 if token.startswith("-") else 1.0
        value, _ = _split_quantity(token[1:] if token.startswith(("+", "-")) else token)
        try:
            return _finite(token, dbm_to_w(sign * value))
        except OverflowError:
            raise _bad(token, "too large: not a finite power") from None
    return _parse_scaled(token, {"": 1.0, "w": 1.0, "mw": 1e-3}, "power")


def parse_link_profile(text: str) -> LinkProfile:
    """Parse the agent's ``--link`` value; see the module docstring for the forms.
    The profile is one the server accepts at registration (``LinkProfile.check``)."""
    compact = "".join(text.split())
    profile = _parse_link_profile(compact)
    try:
        return profile.check()
    except ValueError as exc:
        raise _bad(compact, str(exc)) from None


def _parse_link_profile(compact: str) -> LinkProfile:
    if compact.lower() in ("", "none"):
        return LinkProfile()
    if "=" not in compact:
        if "," in compact:
            raise _bad(compact, "several values need key=value form")
        rate = parse_rate(compact)
        return LinkProfile(uplink_bps=rate, downlink_bps=rate)

    values: dict[str, str] = {}
    for item in compact.split(","):
        key, sep, value = item.partition("=")
        canonical = _KEY_ALIASES.get(key.lower())
        if not sep or canonical is None or not value:
            raise _bad(item, "expected key=value with key up, down, distance, power or bandwidth")
        if canonical in values:
            raise _bad(item, f"{canonical} given twice")
        values[canonical] = value

    up = parse_rate(values["up"]) if "up" in values else 0.0
    down = parse_rate(values["down"]) if "down" in values else 0.0
    radio_given = [k for k in _RADIO_KEYS if k in values]
    if not radio_given:
        return LinkProfile(uplink_bps=up, downlink_bps=down)
    missing = [k for k in _RADIO_KEYS if k not in values]
    if missing:
        raise _bad(compact, "the radio form needs distance, power and bandwidth; missing "
                   + ", ".join(missing))

    distance_m = parse_distance_m(values["distance"])
    tx_power_w = parse_power_w(values["power"])
    bandwidth_hz = parse_bandwidth_hz(values["bandwidth"])
    # Path loss only: a registered profile is the device's nominal link; fading
    # draws belong to the solvers' per-round channel samples, not to startup.
    try:
        rate = WirelessLink(distance_m, tx_power_w, bandwidth_hz).rate_bps()
    except (OverflowError, ValueError, ZeroDivisionError):
        rate = math.nan
    if not (up and down) and not (math.isfinite(rate) and rate >= MIN_RATE_BPS):
        raise _bad(compact, f"these radio parameters give no usable rate ({rate:.3g} bit/s)")
    logger.debug("radio link %.0f m, %.3g W, %.3g Hz -> %.4g bit/s",
                 distance_m, tx_power_w, bandwidth_hz, rate)
    return LinkProfile(
        uplink_bps=up or rate,
        downlink_bps=down or rate,
        distance_m=distance_m,
        tx_power_w=tx_power_w,
        bandwidth_hz=bandwidth_hz,
    )


def format_rate(bps: float) -> str:
    """``12.5e6`` -> ``"12.5 Mbit/s"`` (three significant digits, decimal prefixes)."""
    if not math.isfinite(bps) or bps < 0:
        raise ValueError(f"a rate must be a finite non-negative number, got {bps!r}")
    for scale, unit in ((1e12, "Tbit/s"), (1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        # Round before choosing the prefix so 999.96e6 prints as "1 Gbit/s",
        # not "1e+03 Mbit/s".
        rounded = float(f"{bps / scale:.3g}")
        if rounded >= 1.0:
            return f"{rounded:g} {unit}"
    return f"{float(f'{bps:.3g}'):g} bit/s"


def format_link_profile(link: LinkProfile) -> str:
    """One line for logs: ``"up 10 Mbit/s, down 50 Mbit/s (radio 150 m, 0.2 W, 1 MHz)"``."""
    def side(bps: float) -> str:
        return format_rate(bps) if bps > 0 else "unshaped"

    text = f"up {side(link.uplink_bps)}, down {side(link.downlink_bps)}"
    if link.distance_m > 0:
        text += (f" (radio {link.distance_m:g} m, {link.tx_power_w:.3g} W,"
                 f" {link.bandwidth_hz / 1e6:g} MHz)")
    return text
