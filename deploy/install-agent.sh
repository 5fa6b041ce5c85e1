#!/usr/bin/env bash
# install-agent.sh: install the edgebed device agent on a board (Jetson, Raspberry
# Pi, GPU host) into a virtualenv, without letting pip replace a preinstalled
# torch, and optionally install the systemd unit. See deploy/README.md.
set -euo pipefail

PROG=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
UNIT_TEMPLATE="$SCRIPT_DIR/systemd/edgebed-device.service"
UNIT_VENV_PLACEHOLDER=/opt/edgebed/venv

PY=python3
if [ "$(id -u)" -eq 0 ]; then
    VENV=${EDGEBED_VENV:-/opt/edgebed/venv}
else
    VENV=${EDGEBED_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/edgebed/venv}
fi
SPEC=""
SYSTEM_SITE=1
EDITABLE=0
NO_DEPS=0
ALLOW_PYPI_TORCH=0
DRY_RUN=0
EXTRAS=""
SYSTEMD=0
UNIT_DIR=/etc/systemd/system
ENV_FILE=/etc/edgebed/device.env
SERVER=""
NAME=""

usage() {
    cat <<EOF
Usage: $PROG [OPTIONS] [PACKAGE_SPEC]

Install the edgebed device agent into a virtualenv on this board.

PACKAGE_SPEC is what pip installs: a source tree, a wheel or a requirement
(default: the edgebed checkout this script lives in, $(cd "$SCRIPT_DIR/.." && pwd)).

The venv is made with --system-site-packages, so a torch that is already
installed (NVIDIA's wheel on a Jetson) is reused. When torch is importable,
pip gets a constraints file pinning the torch, torchvision and numpy it found,
so it can never replace them; when pip cannot see that torch's metadata (or
torchvision is missing), edgebed is installed with --no-deps and its other
requirements (grpcio, protobuf, numpy, psutil, nvidia-ml-py) are installed on
their own. Without a torch, pip installs one from PyPI (CPU wheels on a
Raspberry Pi; CUDA wheels on x86 GPU hosts).

Options:
  --python PY         interpreter for the venv (default: python3; on JetPack 4 use python3.8)
  --venv DIR          venv location (default: $VENV;
                      or set EDGEBED_VENV)
  --isolated          make the venv without --system-site-packages
  --editable          pip install -e (a development checkout)
  --extras LIST       extras to add, e.g. server or bench
  --no-deps           always use the --no-deps path (never let pip touch torch/torchvision)
  --allow-pypi-torch  on a Jetson without an importable torch, install PyPI's
                      (CPU-only) torch instead of stopping
  --systemd           install the edgebed-device unit and an env file (root)
  --server HOST:PORT  edge server written into a new env file (with --systemd)
  --name NAME         device name written into a new env file (default: hostname)
  --unit-dir DIR      where the unit goes (default: $UNIT_DIR)
  --env-file FILE     the unit's EnvironmentFile (default: $ENV_FILE)
  --dry-run           print what would be done, change nothing
  -h, --help          show this help

Examples:
  $PROG                                     # venv + agent from this checkout
  sudo $PROG --python python3.8 --systemd --server 192.0.2.10:50051 --name jetson-1
  $PROG ./dist/edgebed-0.1.0-py3-none-any.whl
EOF
}

say() { echo "$PROG: $*"; }
warn() { echo "$PROG: warning: $*" >&2; }
die() {
    echo "$PROG: error: $*" >&2
    exit 1
}
run() {
    echo "+ $*"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; PY=$2; shift 2 ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a value"; VENV=$2; shift 2 ;;
        --isolated) SYSTEM_SITE=0; shift ;;
        --editable) EDITABLE=1; shift ;;
        --extras) [ $# -ge 2 ] || die "--extras needs a value"; EXTRAS=$2; shift 2 ;;
        --no-deps) NO_DEPS=1; shift ;;
        --allow-pypi-torch) ALLOW_PYPI_TORCH=1; shift ;;
        --systemd) SYSTEMD=1; shift ;;
        --server) [ $# -ge 2 ] || die "--server needs HOST:PORT"; SERVER=$2; shift 2 ;;
        --name) [ $# -ge 2 ] || die "--name needs a value"; NAME=$2; shift 2 ;;
        --unit-dir) [ $# -ge 2 ] || die "--unit-dir needs a value"; UNIT_DIR=$2; shift 2 ;;
        --env-file) [ $# -ge 2 ] || die "--env-file needs a value"; ENV_FILE=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --) shift; [ $# -le 1 ] || die "only one PACKAGE_SPEC"; SPEC=${1:-}; shift $# ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) [ -z "$SPEC" ] || die "only one PACKAGE_SPEC (got '$SPEC' and '$1')"; SPEC=$1; shift ;;
    esac
done

if [ -z "$SPEC" ]; then
    [ -f "$SCRIPT_DIR/../pyproject.toml" ] \
        || die "no edgebed checkout around this script ($SCRIPT_DIR/..): pass PACKAGE_SPEC (a source tree, wheel or requirement)"
    SPEC=$(cd "$SCRIPT_DIR/.." && pwd)
fi
if [ -n "$EXTRAS" ]; then
    case "$EXTRAS" in *[!A-Za-z0-9_,-]*) die "bad --extras '$EXTRAS': comma-separated names" ;; esac
fi

# ----------------------------------------------------------------- Python
command -v "$PY" >/dev/null 2>&1 \
    || die "interpreter '$PY' not found. On JetPack 4 (Ubuntu 18.04, python3 is 3.6): apt-get install python3.8 python3.8-venv python3.8-dev, then --python python3.8"
PY_VERSION=$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') \
    || die "'$PY' does not run"
PY_MAJOR=${PY_VERSION%%.*}
PY_MINOR=${PY_VERSION#*.}
PY_MINOR=${PY_MINOR%%.*}
if [ "$PY_MAJOR" -lt 3 ] || { [ "$PY_MAJOR" -eq 3 ] && [ "$PY_MINOR" -lt 8 ]; }; then
    die "edgebed needs Python >= 3.8, '$PY' is $PY_VERSION. On JetPack 4 install python3.8 (Ubuntu's universe package or the deadsnakes PPA) with python3.8-venv and pass --python python3.8"
fi
say "Python $PY_VERSION ($(command -v "$PY"))"
if [ "$DRY_RUN" -eq 0 ] && [ ! -x "$VENV/bin/python" ]; then
    "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 \
        || die "'$PY' has no venv/ensurepip module: apt-get install python$PY_MAJOR.$PY_MINOR-venv"
fi

IS_JETSON=0
if [ -f /etc/nv_tegra_release ] || grep -qs -i 'nvidia jetson' /proc/device-tree/model; then
    IS_JETSON=1
fi

# ------------------------------------------------------------------- venv
if [ -x "$VENV/bin/python" ]; then
    say "reusing the venv at $VENV"
else
    if [ "$SYSTEM_SITE" -eq 1 ]; then
        run "$PY" -m venv --system-site-packages "$VENV"
    else
        run "$PY" -m venv "$VENV"
    fi
fi
if [ "$DRY_RUN" -eq 0 ]; then
    VENV=$(cd "$VENV" && pwd)
fi
VPY="$VENV/bin/python"
PROBE_PY=$VPY
if [ ! -x "$VPY" ]; then
    PROBE_PY=$PY   # dry run, no venv yet: look at what it would inherit
fi
run "$VPY" -m pip install --upgrade pip

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Prints "<import name> <__version__ or -> <pip-visible version or -> <file or ->".
probe_stack() {
    "$PROBE_PY" - <<'EOF'
import sys
try:
    import importlib.metadata as md
except ImportError:  # Python < 3.8 is refused above; keep the probe harmless
    md = None
for name in ("torch", "torchvision", "numpy"):
    try:
        mod = __import__(name)
    except Exception:
        print(name, "-", "-", "-")
        continue
    try:
        dist = md.version(name) if md else "-"
    except Exception:
        dist = "-"
    print(name, getattr(mod, "__version__", "-"), dist, getattr(mod, "__file__", "-"))
EOF
}

say "looking for a preinstalled torch (importing it may take a while)"
BEFORE=$(probe_stack)
field() { echo "$BEFORE" | awk -v n="$1" -v f="$2" '$1 == n { print $f }'; }
TORCH_VER=$(field torch 2)
TORCH_DIST=$(field torch 3)
TORCH_FILE=$(field torch 4)
TV_DIST=$(field torchvision 3)
NUMPY_DIST=$(field numpy 3)

CONSTRAINTS="$WORK/constraints.txt"
: >"$CONSTRAINTS"
if [ "$PY_MAJOR" -eq 3 ] && [ "$PY_MINOR" -lt 9 ]; then
    # protobuf 6 needs Python 3.9; the stubs are protobuf-5 gencode, so 5.x it is.
    echo "protobuf<6" >>"$CONSTRAINTS"
fi

MODE=normal
if [ "$TORCH_VER" != "-" ]; then
    say "found torch $TORCH_VER at $TORCH_FILE: pip will not be allowed to replace it"
    if [ "$TORCH_DIST" != "-" ]; then
        echo "torch==$TORCH_DIST" >>"$CONSTRAINTS"
        MODE=constraints
    else
        say "pip cannot see this torch's metadata (installed without a .dist-info): using --no-deps"
        MODE=no-deps
    fi
    if [ "$TV_DIST" != "-" ]; then
        echo "torchvision==$TV_DIST" >>"$CONSTRAINTS"
    else
        say "torchvision is not importable: skipping it (the agent does not import it; install the build matching your torch for model workloads that do)"
        MODE=no-deps
    fi
    if [ "$NUMPY_DIST" != "-" ]; then
        echo "numpy==$NUMPY_DIST" >>"$CONSTRAINTS"   # the numpy torch runs against
    fi
else
    if [ "$IS_JETSON" -eq 1 ] && [ "$ALLOW_PYPI_TORCH" -eq 0 ]; then
        die "this is a Jetson but '$VPY' cannot import torch: install NVIDIA's torch wheel for Python $PY_MAJOR.$PY_MINOR first (see deploy/README.md), or pass --allow-pypi-torch for PyPI's CPU-only torch"
    fi
    say "no importable torch: pip installs torch from PyPI"
fi
if [ "$NO_DEPS" -eq 1 ]; then
    MODE=no-deps
fi
say "install mode: $MODE; constraints:"
sed 's/^/    /' "$CONSTRAINTS"

TARGET=$SPEC
if [ -n "$EXTRAS" ]; then
    case "$SPEC" in
        /* | ./* | ../* | *.whl | *.tar.gz | *.zip) TARGET="$SPEC[$EXTRAS]" ;;
        *) TARGET="$SPEC" ; warn "--extras applies to a path or wheel spec; add [${EXTRAS}] to '$SPEC' yourself" ;;
    esac
fi
PIP_TARGET=("$TARGET")
if [ "$EDITABLE" -eq 1 ]; then
    PIP_TARGET=(-e "$TARGET")
fi

if [ "$MODE" = no-deps ]; then
    run "$VPY" -m pip install --no-deps "${PIP_TARGET[@]}"
    # The rest of edgebed's requirements, without torch and torchvision.
    if [ "$DRY_RUN" -eq 0 ]; then
        EDGEBED_EXTRAS="$EXTRAS" "$VPY" - >"$WORK/requirements.txt" <<'EOF'
import importlib.metadata as md
import os
import re

EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


def extra_of(marker):
    found = EXTRA.search(marker)
    return found.group(1) if found else None


reqs = md.requires("edgebed") or []
wanted = {e for e in os.environ.get("EDGEBED_EXTRAS", "").split(",") if e}
grown = True
while grown:  # an extra may name others: edgebed[server]
    grown = False
    for req in reqs:
        spec, _, marker = req.partition(";")
        inner = re.match(r"\s*edgebed\s*\[([^\]]*)\]", spec)
        if inner and extra_of(marker) in wanted:
            more = {e.strip() for e in inner.group(1).split(",") if e.strip()}
            if not more <= wanted:
                wanted |= more
                grown = True
out = []
for req in reqs:
    spec, _, marker = req.partition(";")
    extra = extra_of(marker)
    if extra is not None and extra not in wanted:
        continue
    name = re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0].lower()
    if name in ("edgebed", "torch", "torchvision"):
        continue
    if extra is not None:
        marker = re.sub(r"""(\s*and\s*)?extra\s*==\s*['"][^'"]+['"](\s*and\s*)?""", " ", marker)
    marker = marker.strip()
    line = spec.strip() + ("; " + marker if marker else "")
    if line not in out:
        out.append(line)
print("\n".join(out))
EOF
        say "requirements installed next to it:"
        sed 's/^/    /' "$WORK/requirements.txt"
    fi
    run "$VPY" -m pip install -c "$CONSTRAINTS" -r "$WORK/requirements.txt"
else
    run "$VPY" -m pip install -c "$CONSTRAINTS" "${PIP_TARGET[@]}"
fi

# ----------------------------------------------------------------- verify
if [ "$DRY_RUN" -eq 0 ]; then
    AFTER=$(probe_stack)
    AFTER_TORCH=$(echo "$AFTER" | awk '$1 == "torch" { print $2, $4 }')
    if [ "$TORCH_VER" != "-" ] && [ "$AFTER_TORCH" != "$TORCH_VER $TORCH_FILE" ]; then
        die "pip replaced torch ($TORCH_VER at $TORCH_FILE, now $AFTER_TORCH): run '$VPY -m pip uninstall torch' to get the preinstalled one back"
    fi
    "$VPY" -c 'import edgebed.device.cli' \
        || die "the agent does not import in $VENV (see the traceback above)"
    "$VENV/bin/edgebed-device" --help >/dev/null
    say "installed: $("$VPY" -c 'import importlib.metadata as m; print("edgebed", m.version("edgebed"))'), torch $(echo "$AFTER" | awk '$1 == "torch" { print $2 }')"
fi

# ---------------------------------------------------------------- systemd
if [ "$SYSTEMD" -eq 1 ]; then
    [ "$DRY_RUN" -eq 1 ] || [ "$(id -u)" -eq 0 ] || die "--systemd needs root (it writes $UNIT_DIR and $ENV_FILE)"
    [ -f "$UNIT_TEMPLATE" ] || die "unit template $UNIT_TEMPLATE not found"
    say "installing $UNIT_DIR/edgebed-device.service (agent: $VENV/bin/edgebed-device)"
    if [ "$DRY_RUN" -eq 0 ]; then
        mkdir -p "$UNIT_DIR"
        sed -e "s#$UNIT_VENV_PLACEHOLDER#$VENV#g" -e "s#^EnvironmentFile=.*#EnvironmentFile=$ENV_FILE#" \
            "$UNIT_TEMPLATE" >"$UNIT_DIR/edgebed-device.service"
        if [ -e "$ENV_FILE" ]; then
            say "keeping the existing $ENV_FILE"
        else
            mkdir -p "$(dirname "$ENV_FILE")"
            (
                umask 077
                cat >"$ENV_FILE" <<EOF
# edgebed-device settings (read by systemd; keep this file 0600: it holds the credential)
EDGEBED_SERVER=${SERVER:-SERVER_IP:50051}
EDGEBED_NAME=${NAME:-$(hostname -s 2>/dev/null || hostname)}
# This device's credential: on the server, \`edgebed-server enroll NAME\` prints it once.
# Until it is set here the agent is refused and stops (exit status 2, not restarted).
#EDGEBED_TOKEN=ebc1_...
# e.g. --power-backend jetson --tls-ca /etc/edgebed/ca.pem, and for mutual TLS
# --tls-cert /etc/edgebed/NAME.pem --tls-key /etc/edgebed/NAME.key (\`edgebed-server ca issue\`)
EDGEBED_DEVICE_ARGS=
EOF
            )
            say "wrote $ENV_FILE"
        fi
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            systemctl daemon-reload
        fi
    fi
fi

cat <<EOF

Next steps:
  1. Try the agent by hand:
       $VENV/bin/edgebed-device --server SERVER_IP:50051 --name $(hostname -s 2>/dev/null || echo NAME) --token "\$EDGEBED_TOKEN"
     (--power-backend jetson|rpi5|nvml|rapl|utilization insists on one meter)
EOF
if [ "$SYSTEMD" -eq 1 ]; then
    cat <<EOF
  2. Edit $ENV_FILE (server, name, token), then:
       systemctl enable --now edgebed-device
       journalctl -u edgebed-device -f
EOF
else
    cat <<EOF
  2. To run it as a service: sudo $0 --venv $VENV --systemd --server SERVER_IP:50051
EOF
fi
