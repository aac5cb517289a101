#!/bin/sh
# Installs salespulse as README "Running it under systemd" describes.
#
#   systemd/install.sh [--root DIR] [--binary PATH]
#       the binary, the unit, the config (kept if there is one) and the credentials folder
#   systemd/install.sh [--root DIR] --credential NAME
#       reads one secret from standard input (hidden on a terminal) and stores it as the
#       credential NAME (webhook_url, smtp_password) that the unit's LoadCredential= reads
#
# --root DIR installs under DIR instead of / (packaging, tests). Run from the repository.
# What it writes, and why:
#   /usr/local/bin/salespulse                 0755 root
#   /etc/systemd/system/salespulse.service    0644 root
#   /etc/salespulse/                          0755 root
#   /etc/salespulse/salespulse.toml           0644 root  no secrets in it: the unit's
#                                                        DynamicUser must read it
#   /etc/salespulse/credentials/              0700 root  read by systemd as root before it
#   /etc/salespulse/credentials/NAME          0600 root  starts the service
set -eu
umask 077

root=
binary=target/release/salespulse
credential=
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --credential) credential=${2:?--credential needs a name}; shift 2 ;;
        -h | --help) sed -n '2,19s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

here=$(cd "$(dirname "$0")/.." && pwd)
# Owned by root when run as root; a test on a temporary root runs as whoever it is.
owner=
if [ "$(id -u)" = 0 ]; then owner="-o 0 -g 0"; fi
etc="$root/etc/salespulse"

if [ -n "$credential" ]; then
    case "$credential" in
        webhook_url | smtp_password) ;;
        *) echo "install.sh: the unit loads the credentials webhook_url and smtp_password, not $credential" >&2; exit 2 ;;
    esac
    # shellcheck disable=SC2086
    install -d -m 700 $owner "$etc/credentials"
    if [ -t 0 ]; then
        printf '%s: ' "$credential" >&2
        stty -echo
        trap 'stty echo' EXIT
        IFS= read -r value
        stty echo
        trap - EXIT
        echo >&2
    else
        IFS= read -r value || true
    fi
    if [ -z "$value" ]; then
        echo "install.sh: empty $credential, nothing stored" >&2
        exit 2
    fi
    tmp="$etc/credentials/.$credential.new"
    printf '%s\n' "$value" > "$tmp"
    chmod 600 "$tmp"
    if [ -n "$owner" ]; then chown 0:0 "$tmp"; fi
    mv -f "$tmp" "$etc/credentials/$credential"
    echo "stored $etc/credentials/$credential (0600)"
    exit 0
fi

if [ ! -x "$binary" ]; then
    echo "install.sh: no binary at $binary (run cargo build --release first, or give --binary)" >&2
    exit 1
fi
# shellcheck disable=SC2086
{
    install -d -m 755 $owner "$root/usr/local/bin" "$root/etc/systemd/system" "$etc"
    install -m 755 $owner "$binary" "$root/usr/local/bin/salespulse"
    install -m 644 $owner "$here/systemd/salespulse.service" "$root/etc/systemd/system/salespulse.service"
    install -d -m 700 $owner "$etc/credentials"
}
if [ -e "$etc/salespulse.toml" ]; then
    echo "kept $etc/salespulse.toml"
else
    # shellcheck disable=SC2086
    install -m 644 $owner "$here/config/example.toml" "$etc/salespulse.toml"
    echo "installed $etc/salespulse.toml: edit it (portal, departments, mail server, recipients)"
fi
for c in webhook_url smtp_password; do
    if [ ! -s "$etc/credentials/$c" ]; then
        echo "missing credential $c: $0 ${root:+--root $root }--credential $c"
    fi
done
