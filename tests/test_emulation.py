"""The agent's --link parser and rate formatting."""
import pytest
from edgebed.device.emulation import format_link_profile, format_rate, parse_link_profile
from edgebed.proto.link_model import WirelessLink, dbm_to_w
from edgebed.proto.records import LinkProfile


@pytest.mark.parametrize(
    "text, bps",
    [
        ("10Mbit", 10e6),
        ("10mbps", 10e6),
        ("10 Mbit/s", 10e6),
        ("10MBit", 10e6),
        ("2.5e6", 2.5e6),
        ("500kbit", 500e3),
        ("1gbit", 1e9),
        ("1.5Gbps", 1.5e9),
        ("64000", 64e3),
    ],
)
def test_single_rate_applies_to_both_directions(text, bps):
    assert parse_link_profile(text) == LinkProfile(uplink_bps=bps, downlink_bps=bps)


@pytest.mark.parametrize("text", ["none", "", "  ", "NONE"])
def test_none_is_unshaped(text):
    assert parse_link_profile(text) == LinkProfile()


def test_per_direction_rates():
    assert parse_link_profile("up=10Mbit,down=50Mbit") == LinkProfile(
        uplink_bps=10e6, downlink_bps=50e6)
    assert parse_link_profile(" uplink = 1mbps ") == LinkProfile(uplink_bps=1e6)


def test_radio_form_uses_the_link_model_and_keeps_parameters():
    profile = parse_link_profile("distance=150m,power=0.2W,bandwidth=1MHz")
    expected = WirelessLink(150.0, 0.2, 1e6).rate_bps()
    assert profile.uplink_bps == pytest.approx(expected)
    assert profile.downlink_bps == pytest.approx(expected)
    assert (profile.distance_m, profile.tx_power_w, profile.bandwidth_hz) == (150.0, 0.2, 1e6)
    # Path loss only, so a sane value for 150 m at 200 mW over 1 MHz.
    assert 5e6 < expected < 30e6


def test_radio_aliases_and_units():
    profile = parse_link_profile("d=0.5km,p=23dBm,w=200kHz")
    assert profile.distance_m == 500.0
    assert profile.tx_power_w == pytest.approx(dbm_to_w(23.0))
    assert profile.bandwidth_hz == 200e3
    assert profile.uplink_bps == pytest.approx(
        WirelessLink(500.0, dbm_to_w(23.0), 200e3).rate_bps())
    assert parse_link_profile("d=10,p=200mW,w=1e6").tx_power_w == pytest.approx(0.2)
    assert parse_link_profile("d=10,p=-10dBm,w=1e6").tx_power_w == pytest.approx(1e-4)


def test_explicit_direction_overrides_radio_rate():
    profile = parse_link_profile("d=150m,p=0.2W,w=1MHz,down=100Mbit")
    assert profile.downlink_bps == 100e6
    assert profile.uplink_bps == pytest.approx(WirelessLink(150.0, 0.2, 1e6).rate_bps())


@pytest.mark.parametrize(
    "text, token",
    [
        ("fast", "fast"),
        ("10MB", "10MB"),          # bytes are refused, not guessed
        ("10MBps", "10MBps"),
        ("10Mfoo", "10Mfoo"),
        ("0", "0"),
        ("-5Mbit", "-5Mbit"),
        ("nan", "nan"),
        ("1e999", "1e999"),
        ("up=10Mbit,up=5Mbit", "up=5Mbit"),
        ("speed=10Mbit", "speed=10Mbit"),
        ("up=", "up="),
        ("10Mbit,20Mbit", "10Mbit,20Mbit"),
        ("distance=150m,power=0.2W", "bandwidth"),
        ("d=150parsec,p=0.2W,w=1MHz", "150parsec"),
        ("d=150m,p=0W,w=1MHz", "0W"),
        ("d=150m,p=0.2W,w=1MHz,up=fast", "fast"),
        # finite before the unit, not after it (1e300 Gbit/s is infinite)
        ("up=1e300Gbit", "1e300Gbit"),
        ("1e300Gbit", "1e300Gbit"),
        ("d=150m,p=0.2W,w=1e300GHz", "1e300GHz"),
        ("d=150m,p=1e300dBm,w=1MHz", "1e300dBm"),
        ("0.5bit", "at least 1 bit/s"),                       # LinkProfile.check: the server's rule
        ("d=1e300km,p=0.2W,w=1MHz", "no usable rate"),      # a radio that carries nothing
        ("d=150m,p=-500dBm,w=1MHz", "no usable rate"),
    ],
)
def test_bad_input_names_the_token_and_the_accepted_forms(text, token):
    with pytest.raises(ValueError) as info:
        parse_link_profile(text)
    message = str(info.value)
    assert token in message
    assert "up=10Mbit,down=50Mbit" in message


@pytest.mark.parametrize(
    "bps, text",
    [
        (12.5e6, "12.5 Mbit/s"),
        (1e9, "1 Gbit/s"),
        (999.96e6, "1 Gbit/s"),
        (500e3, "500 kbit/s"),
        (13251076.2, "13.3 Mbit/s"),
        (999.0, "999 bit/s"),
        (0.0, "0 bit/s"),
    ],
)
def test_format_rate(bps, text):
    assert format_rate(bps) == text


def test_format_rate_rejects_nonsense():
    with pytest.raises(ValueError):
        format_rate(-1.0)
    with pytest.raises(ValueError):
        format_rate(float("inf"))


def test_format_link_profile():
    assert format_link_profile(LinkProfile()) == "up unshaped, down unshaped"
    text = format_link_profile(parse_link_profile("d=150m,p=0.2W,w=1MHz"))
    assert text.startswith("up 13.3 Mbit/s, down 13.3 Mbit/s")
    assert "150 m" in text and "1 MHz" in text
