# Sourced by up.sh and test.sh: what a fresh machine with only Python 3.11 and apt may lack.
PY="${PYTHON:-python3.11}"
_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] || return 1
         [ -n "${_SQUALL_APT_UPDATED:-}" ] || { apt-get update -qq; _SQUALL_APT_UPDATED=1; }
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
# the seccomp filter loads libseccomp (without it instances run unfiltered, and the suite says so)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || _apt libseccomp2 || echo "note: libseccomp2 missing" >&2
# network mode "nat" (the default) loads its firewall and NAT rules with nft (without it functions get no network)
command -v nft >/dev/null 2>&1 || _apt nftables || echo "note: nftables missing: network nat falls back to none" >&2
# instances' /tmp is a small ext4 filesystem per slot on a loop device (without mkfs.ext4: a tmpfs, charged to memory)
command -v mkfs.ext4 >/dev/null 2>&1 || _apt e2fsprogs || echo "note: e2fsprogs missing: /tmp falls back to tmpfs" >&2
# cluster mode's state backend; the tests' PostgreSQL pass runs initdb/postgres from it (nothing is started here)
# (and no "main" cluster: Debian's package would otherwise create one and may start it on port 5432)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] && [ ! -e /etc/postgresql-common/createcluster.conf ] && mkdir -p /etc/postgresql-common \
        && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    _apt postgresql || echo "note: postgresql missing: the PostgreSQL tests skip" >&2
fi
# cluster mode's tests start their own NATS JetStream servers (Debian's nats-server, 2.9: docs/design.md "Cluster mode");
# the package's systemd unit is not needed and the tests never use port 4222
{ command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; } || _apt nats-server \
    || echo "note: nats-server missing: the cluster tests (tests/cluster) fail" >&2
# Debian's Python needs its venv package for `python -m venv`
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || { rm -rf .venv; _apt "python3.11-venv" || _apt python3-venv; "$PY" -m venv .venv; }
fi
