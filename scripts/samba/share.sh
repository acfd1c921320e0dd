# The inbox's SMB share, for scripts/install-pi (sourced after scripts/lib/install.sh).
# Idempotent: the share file is rewritten only when it differs, the include added once.
# shellcheck shell=bash

# Overridable so tests can point them at a scratch smb.conf.
SAMBA_CONF=${EDGEPAIR_SAMBA_CONF:-/etc/samba/smb.conf}
SAMBA_SHARE=${EDGEPAIR_SAMBA_SHARE:-/etc/samba/edgepair-inbox.conf}
SAMBA_TEMPLATE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/edgepair-inbox.conf

# samba_share DIR: share DIR as [inbox] (Samba installed if missing), then reload smbd.
samba_share() {
    local dir=$1 text
    say "samba share [inbox] for $dir"
    case $dir in
        *[!A-Za-z0-9/._-]*) die "inbox dir $dir: use letters, digits, '/', '.', '_' and '-' only" ;;
    esac
    if ! command -v smbd >/dev/null 2>&1; then
        run apt-get update -qq
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq samba
    fi
    text=$(sed "s|@INBOX_DIR@|$dir|g" "$SAMBA_TEMPLATE")
    if [ "$(cat "$SAMBA_SHARE" 2>/dev/null)" = "$text" ]; then
        note "$SAMBA_SHARE: up to date"
    elif [ "$DRY_RUN" = 1 ]; then
        note "would write: $SAMBA_SHARE (from $SAMBA_TEMPLATE, path = $dir)"
    else
        note "writing $SAMBA_SHARE"
        printf '%s\n' "$text" >"$SAMBA_SHARE"
    fi
    if grep -qsE "^[[:space:]]*include[[:space:]]*=[[:space:]]*${SAMBA_SHARE//./\\.}[[:space:]]*$" \
        "$SAMBA_CONF"; then
        note "$SAMBA_CONF: includes it"
    elif [ "$DRY_RUN" = 1 ]; then
        note "would append to $SAMBA_CONF: include = $SAMBA_SHARE"
    else
        note "appending 'include = $SAMBA_SHARE' to $SAMBA_CONF"
        printf '\n# The edgepair inbox share (added by scripts/install-pi).\ninclude = %s\n' \
            "$SAMBA_SHARE" >>"$SAMBA_CONF"
    fi
    if [ "$DRY_RUN" != 1 ] && command -v testparm >/dev/null 2>&1 &&
        ! testparm -s "$SAMBA_CONF" >/dev/null 2>&1; then
        note "warning: testparm -s $SAMBA_CONF reports problems: fix them before smbd reloads"
    fi
    if systemd_running; then
        run systemctl enable smbd.service
        run systemctl reload-or-restart smbd.service
    fi
    note "SMB users: smbpasswd -a NAME (or guest ok = yes in $SAMBA_SHARE for an open drop box)"
}
