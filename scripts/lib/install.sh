# Shared by scripts/install-pi and scripts/install-host: idempotent steps for a real machine.
# Every change goes through `run`, so --dry-run prints exactly what would be done.
# shellcheck shell=bash

PREFIX=/opt/edgepair
VENV_DIR=$PREFIX/venv
EDGEPAIR_BIN=$VENV_DIR/bin/edgepair
ETC_DIR=/etc/edgepair
UNIT_DIR=/usr/local/lib/systemd/system   # locally installed software; /etc stays the admin's
DROPIN_ROOT=/etc/systemd/system
SERVICE_USER=edgepair
DRY_RUN=0
SECRETS_FROM=

usage() {
    cat <<EOF
Usage: $(basename "$0") [--dry-run] [--secrets FILE]

Install or update edgepair on this machine (run as root; safe to run again).

  --dry-run       print what would be done, change nothing (no root needed)
  --secrets FILE  when $ETC_DIR/secrets.toml does not exist yet, install FILE as it
                  (the other side's secrets file, so both hold the same handshake_key)
EOF
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --dry-run) DRY_RUN=1 ;;
            --secrets)
                [ $# -ge 2 ] || die "--secrets needs a FILE"
                SECRETS_FROM=$2
                shift
                ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
        shift
    done
    if [ -n "$SECRETS_FROM" ] && [ ! -r "$SECRETS_FROM" ]; then
        die "--secrets $SECRETS_FROM: not a readable file"
    fi
}

say() { printf '== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 1; }

# run CMD...: do it, or only print it with --dry-run.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '   would run:'
    else
        printf '   +'
    fi
    printf ' %q' "$@"
    printf '\n'
    if [ "$DRY_RUN" != 1 ]; then "$@"; fi
}

require_root() {
    [ "$DRY_RUN" = 1 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "run as root (or with --dry-run to see what would be done)"
}

systemd_running() { [ -d /run/systemd/system ]; }

# ensure_python: python3 ≥ 3.11 with venv (Debian splits ensurepip into python3-venv).
ensure_python() {
    say "python"
    command -v python3 >/dev/null 2>&1 || die "python3 not found (apt-get install python3)"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "python3 is $(python3 -V 2>&1); edgepair needs 3.11 or newer (Debian 12 / bookworm)"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        run apt-get update -qq
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    else
        note "$(python3 -V) with venv: ok"
    fi
}

# ensure_user HOME: the system user and group the daemons run as.
ensure_user() {
    say "user $SERVICE_USER"
    if id -u "$SERVICE_USER" >/dev/null 2>&1; then
        note "exists"
    else
        run useradd --system --user-group --home-dir "$1" --no-create-home \
            --shell /usr/sbin/nologin --comment "edgepair daemons" "$SERVICE_USER"
    fi
}

# ensure_venv REPO: (re)install edgepair from the checkout into the root-owned venv.
ensure_venv() {
    say "edgepair into $VENV_DIR"
    [ -x "$VENV_DIR/bin/python" ] || run python3 -m venv "$VENV_DIR"
    run "$VENV_DIR/bin/pip" install --quiet --upgrade pip
    # A local directory is always rebuilt and reinstalled, so this also picks up new code.
    run "$VENV_DIR/bin/pip" install --quiet "$1"
}

# install_config EXAMPLE NAME: copy an example config to /etc/edgepair/NAME if absent.
# Sets CONFIG_CREATED=1 when it did (the daemons then wait for the admin's edits).
CONFIG_CREATED=0
install_config() {
    local example=$1 target=$ETC_DIR/$2
    say "config $target"
    if [ ! -d "$ETC_DIR" ]; then
        run install -d -o root -g "$SERVICE_USER" -m 0750 "$ETC_DIR"
    fi
    if [ -e "$target" ]; then
        note "exists; left as it is (the example is $example)"
    else
        run install -o root -g "$SERVICE_USER" -m 0640 "$example" "$target"
        CONFIG_CREATED=1
    fi
}

# toml_get FILE TABLE KEY: print a string value ("" when absent), with Python's tomllib.
toml_get() {
    python3 - "$1" "$2" "$3" <<'EOF'
import sys, tomllib
path, table, key = sys.argv[1:]
try:
    with open(path, "rb") as f:
        data = tomllib.load(f)
except FileNotFoundError:
    data = {}
value = data.get(table, {}).get(key, "") if isinstance(data.get(table), dict) else ""
print(value if isinstance(value, str) else "")
EOF
}

# toml_has FILE TABLE: succeed when the file has that top-level table.
toml_has() {
    python3 - "$1" "$2" <<'EOF'
import sys, tomllib
try:
    with open(sys.argv[1], "rb") as f:
        sys.exit(0 if sys.argv[2] in tomllib.load(f) else 1)
except FileNotFoundError:
    sys.exit(1)
EOF
}

# ensure_secrets PATH: create the secrets file with a new handshake key, or fix its mode.
ensure_secrets() {
    local path=$1 key tmp
    say "secrets $path"
    if [ -e "$path" ]; then
        note "exists; keeping its keys"
        if [ -n "$SECRETS_FROM" ]; then
            note "--secrets $SECRETS_FROM not used: edit $path by hand to change a key"
        fi
        if [ "$(stat -c '%U:%G %a' "$path")" != "$SERVICE_USER:$SERVICE_USER 600" ]; then
            run chown "$SERVICE_USER:$SERVICE_USER" "$path"
            run chmod 600 "$path"
        fi
        return 0
    fi
    if [ -n "$SECRETS_FROM" ]; then
        run install -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0600 "$SECRETS_FROM" "$path"
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        note "would write: $path (handshake_key from '$EDGEPAIR_BIN keygen', mode 600, owner $SERVICE_USER)"
        return 0
    fi
    key=$("$EDGEPAIR_BIN" keygen)
    case $key in
        *handshake_key*) ;;                       # already a TOML line
        *) key="handshake_key = \"$key\"" ;;
    esac
    tmp=$(umask 077 && mktemp "$(dirname "$path")/.secrets.XXXXXX")
    {
        echo "# edgepair secrets: keep mode 600. The Pi and the host need the same handshake_key."
        echo "# Optional keys: see $PREFIX/examples/secrets.example.toml."
        echo "$key"
    } >"$tmp"
    run chown "$SERVICE_USER:$SERVICE_USER" "$tmp"
    run mv "$tmp" "$path"
    SECRETS_CREATED=1
}
# shellcheck disable=SC2034  # read by scripts/install-host
SECRETS_CREATED=0

# install_file SRC DST MODE: copy when missing or different.
install_file() {
    if cmp -s "$1" "$2"; then
        note "$2: up to date"
    else
        run install -D -o root -g root -m "$3" "$1" "$2"
    fi
}

# install_tree SRC DST: replace directory DST with a copy of SRC when they differ.
install_tree() {
    if [ -d "$2" ] && diff -rq "$1" "$2" >/dev/null 2>&1; then
        note "$2: up to date"
        return 0
    fi
    run rm -rf "$2.new"
    run cp -a "$1" "$2.new"
    run chown -R root:root "$2.new"
    run rm -rf "$2"
    run mv "$2.new" "$2"
}

# install_examples REPO: the example configs, for reference after upgrades.
install_examples() {
    local name
    say "examples in $PREFIX/examples"
    for name in pi.toml host.toml secrets.example.toml; do
        install_file "$1/scripts/config/$name" "$PREFIX/examples/$name" 0644
    done
}

# install_units REPO UNIT...: the unit files, into $UNIT_DIR.
install_units() {
    local repo=$1 unit
    shift
    say "units in $UNIT_DIR"
    for unit in "$@"; do
        install_file "$repo/systemd/$unit" "$UNIT_DIR/$unit" 0644
    done
}

# write_dropin UNIT NAME TEXT: /etc/systemd/system/UNIT.d/NAME.conf holds TEXT.
write_dropin() {
    local dropin=$DROPIN_ROOT/$1.d/$2.conf
    if [ "$(cat "$dropin" 2>/dev/null)" = "$3" ]; then
        note "$dropin: up to date"
    elif [ "$DRY_RUN" = 1 ]; then
        note "would write: $dropin"
        printf '%s\n' "$3" | sed 's/^/       | /'
    else
        run install -d -m 0755 "$(dirname "$dropin")"
        note "writing $dropin"
        printf '%s\n' "$3" >"$dropin"
    fi
}

# remove_dropin UNIT NAME: the drop-in is no longer wanted.
remove_dropin() {
    local dropin=$DROPIN_ROOT/$1.d/$2.conf
    if [ -e "$dropin" ]; then run rm -f "$dropin"; fi
}

# writable_dir KIND DIR DEFAULT OWNER MODE UNIT...: create DIR if missing. When DIR is not
# DEFAULT (the path the units name), a drop-in KIND.conf per unit grants write access; for
# KIND "inbox-dir" it also clears the unit's own ReadWritePaths=, whose default directory
# may not exist (a missing ReadWritePaths= directory stops the unit from starting).
writable_dir() {
    local kind=$1 dir=$2 default=$3 owner=$4 mode=$5 unit reset=
    shift 5
    [ "$kind" = inbox-dir ] && reset=$'ReadWritePaths=\n'
    say "$kind $dir"
    if [ -d "$dir" ]; then
        note "exists; owner and mode left as they are"
    else
        run install -d -o "$owner" -g "$SERVICE_USER" -m "$mode" "$dir"
    fi
    for unit in "$@"; do
        if [ "$dir" = "$default" ]; then
            remove_dropin "$unit" "$kind"
        else
            write_dropin "$unit" "$kind" "$(printf '# Written by %s: %s is not the default %s.\n[Service]\n%sReadWritePaths=%s' \
                "$(basename "$0")" "$dir" "$default" "$reset" "$dir")"
        fi
    done
}

daemon_reload() {
    say "systemd"
    if systemd_running; then
        run systemctl daemon-reload
    else
        note "systemd is not running here (image build?): units are enabled, not started"
    fi
}

# start_units CONFIG UNIT...: enable; (re)start when the config is ready and systemd runs.
start_units() {
    local config=$1
    shift
    run systemctl enable "$@"
    if ! systemd_running; then
        return 0
    fi
    if [ "$CONFIG_CREATED" = 1 ]; then
        note "$config is the example: edit it, then: systemctl restart $*"
        return 0
    fi
    if [ "$DRY_RUN" = 1 ] || "$EDGEPAIR_BIN" check-config "$config"; then
        run systemctl restart "$@"
    else
        note "$config has problems (above): fix them, then: systemctl restart $*"
    fi
}

# stop_units UNIT...: disable and stop units this configuration no longer wants.
stop_units() {
    local unit
    for unit in "$@"; do
        if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
            if systemd_running; then
                run systemctl disable --now "$unit"
            else
                run systemctl disable "$unit"
            fi
        fi
    done
}
