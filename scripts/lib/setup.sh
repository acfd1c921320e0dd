# Shared by scripts/test, scripts/demo and the benchmarks: system tools and the venv.
# shellcheck shell=bash

VENV=${EDGEPAIR_VENV:-$PWD/.venv}

# Debian packages the tests run for real (no test is skipped for a missing tool).
SYSTEM_TOOLS=(
    "systemd-analyze:systemd"
    "smbd:samba"
    "smbclient:smbclient"
    "rsync:rsync"
    "dnsmasq:dnsmasq-base"
    "nginx:nginx"
    "chromium:chromium fonts-dejavu-core"
    "prometheus:prometheus"
    "mosquitto:mosquitto"
)

ensure_system_tools() {
    local missing=() entry tool pkg
    for entry in "${SYSTEM_TOOLS[@]}"; do
        tool=${entry%%:*}
        pkg=${entry#*:}
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=($pkg)  # a tool may need several packages
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing Debian packages: ${missing[*]}"
        if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# ensure_venv [extra]: create .venv and install edgepair (editable) when pyproject changed.
ensure_venv() {
    local extra=${1:-}
    local spec="."
    [ -n "$extra" ] && spec=".[$extra]"
    local stamp="$VENV/.edgepair-installed-$extra"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV"
        python3 -m venv "$VENV"
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "== installing edgepair$([ -n "$extra" ] && echo "[$extra]") into $VENV"
        "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
        if ! "$VENV/bin/pip" install -q -e "$spec" >"$VENV/pip.log" 2>&1; then
            cat "$VENV/pip.log" >&2
            echo "pip install failed (log above)" >&2
            return 1
        fi
        touch "$stamp"
    fi
}
