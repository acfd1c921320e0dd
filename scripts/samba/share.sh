# The Pi's SMB shares, for scripts/install-pi (sourced after scripts/lib/install.sh): the
# inbox ([inbox], files move to the host) and the standalone share ([share], plain storage).
# Idempotent: a share file is rewritten only when it differs, each include added once.
# shellcheck shell=bash

# Overridable so tests can point them at a scratch smb.conf.
SAMBA_CONF=${EDGEPAIR_SAMBA_CONF:-/etc/samba/smb.conf}
SAMBA_SHARE=${EDGEPAIR_SAMBA_SHARE:-/etc/samba/edgepair-inbox.conf}
SAMBA_STANDALONE=${EDGEPAIR_SAMBA_STANDALONE:-/etc/samba/edgepair-share.conf}
SAMBA_TEMPLATES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# samba_share DIR: share DIR as [inbox] (Samba installed if missing), then reload smbd.
samba_share() {
    samba_include inbox "$1" @INBOX_DIR@ "$SAMBA_TEMPLATES/edgepair-inbox.conf" "$SAMBA_SHARE"
    note "SMB users: smbpasswd -a NAME (or guest ok = yes in $SAMBA_SHARE for an open drop box)"
}

# samba_standalone DIR: share DIR as [share], plain storage on the Pi, then reload smbd.
samba_standalone() {
    samba_include share "$1" @SHARE_DIR@ "$SAMBA_TEMPLATES/edgepair-share.conf" "$SAMBA_STANDALONE"
    note "SMB users: smbpasswd -a NAME; they reach it as \\\\$(hostname)\\share"
}

# samba_include NAME DIR PLACEHOLDER TEMPLATE TARGET: write TARGET from TEMPLATE with DIR,
# include it from smb.conf once, check the result with testparm, reload smbd.
samba_include() {
    local name=$1 dir=$2 placeholder=$3 template=$4 target=$5 text
    say "samba share [$name] for $dir"
    case $dir in
        *[!A-Za-z0-9/._-]*) die "$name dir $dir: use letters, digits, '/', '.', '_' and '-' only" ;;
    esac
    if ! command -v smbd >/dev/null 2>&1; then
        run apt-get update -qq
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq samba
    fi
    text=$(sed "s|$placeholder|$dir|g" "$template")
    if [ "$(cat "$target" 2>/dev/null)" = "$text" ]; then
        note "$target: up to date"
    elif [ "$DRY_RUN" = 1 ]; then
        note "would write: $target (from $template, path = $dir)"
    else
        note "writing $target"
        printf '%s\n' "$text" >"$target"
    fi
    if grep -qsE "^[[:space:]]*include[[:space:]]*=[[:space:]]*${target//./\\.}[[:space:]]*$" \
        "$SAMBA_CONF"; then
        note "$SAMBA_CONF: includes it"
    elif [ "$DRY_RUN" = 1 ]; then
        note "would append to $SAMBA_CONF: include = $target"
    else
        note "appending 'include = $target' to $SAMBA_CONF"
        printf '\n# The edgepair %s share (added by scripts/install-pi).\ninclude = %s\n' \
            "$name" "$target" >>"$SAMBA_CONF"
    fi
    if [ "$DRY_RUN" != 1 ] && command -v testparm >/dev/null 2>&1 &&
        ! testparm -s "$SAMBA_CONF" >/dev/null 2>&1; then
        note "warning: testparm -s $SAMBA_CONF reports problems: fix them before smbd reloads"
    fi
    if systemd_running; then
        run systemctl enable smbd.service
        run systemctl reload-or-restart smbd.service
    fi
}
