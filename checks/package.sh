#!/usr/bin/env bash
# The Debian package, built and used as an operator would: cargo-deb
# (crates.io) packs the release binary with the configuration, the systemd
# unit and the maintainer scripts of deploy/ (Cargo.toml's
# [package.metadata.deb]); the package is installed on this machine with
# apt-get, and the installed binary runs `--version` and, as the `tongban`
# user, `demo --no-serve` and `keys init`; then the package is purged and
# the machine left as it was found.
#
#   bash checks/package.sh      (as root; .ci/run runs it)
#
# It refuses a machine where the package, a `tongban` user or
# /var/lib/tongban is there already.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "package check: $*" >&2; exit 1; }
CARGO_DEB_VERSION=3.6.2

[ "$(id -u)" = 0 ] || fail "it installs a package; run it as root"
dpkg-query -W -f='${Status}' tongban 2>/dev/null | grep -q "install ok" && fail "the tongban package is installed"
id tongban >/dev/null 2>&1 && fail "a user named tongban exists"
[ -e /var/lib/tongban ] && fail "/var/lib/tongban exists"
[ -e /etc/tongban ] && fail "/etc/tongban exists"

if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "== installing cargo-deb $CARGO_DEB_VERSION (crates.io): a few minutes the first time"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi
scripts/need-debian adduser dpkg-dev

cleanup() {
  set +e
  dpkg --purge tongban >/dev/null 2>&1
  rm -rf /var/lib/tongban /etc/tongban
  id tongban >/dev/null 2>&1 && deluser --quiet --system tongban >/dev/null 2>&1
  getent group tongban >/dev/null && delgroup --quiet --system tongban >/dev/null 2>&1
}
trap cleanup EXIT

echo "== cargo deb (the release binary, as built for the README's demo command)"
cargo build --release --locked --quiet
rm -rf target/debian
cargo deb --no-build --quiet
deb=$(ls target/debian/tongban_*.deb)
contents=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/tongban ./etc/tongban/tongban.toml ./etc/tongban/calendar.toml ./etc/tongban/anomaly.toml ./usr/lib/systemd/system/tongban.service ./usr/share/doc/tongban/README.md; do
  grep -q " $path\$" <<<"$contents" || fail "$deb lacks $path"
done
dpkg-deb --field "$deb" Conffiles 2>/dev/null | grep -q /etc/tongban/tongban.toml ||
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -q /etc/tongban/tongban.toml ||
  fail "/etc/tongban/tongban.toml is not a conffile"
echo "$deb: $(du -h "$deb" | cut -f1)"

echo "== apt-get install $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null

echo "== the installed gateway"
[ "$(command -v tongban)" = /usr/bin/tongban ] || fail "tongban on PATH is $(command -v tongban), not the package's"
/usr/bin/tongban --version
id tongban
[ "$(stat -c '%U:%G %a' /var/lib/tongban)" = "tongban:tongban 750" ] || fail "/var/lib/tongban: $(stat -c '%U:%G %a' /var/lib/tongban)"
[ "$(stat -c '%U:%G %a' /etc/tongban/tongban.toml)" = "root:tongban 640" ] || fail "/etc/tongban/tongban.toml: $(stat -c '%U:%G %a' /etc/tongban/tongban.toml)"
grep -q '^ExecStart=tongban serve --config /etc/tongban/tongban.toml$' /usr/lib/systemd/system/tongban.service ||
  fail "the unit does not start the installed binary"
cd /var/lib/tongban
runuser -u tongban -- tongban demo --home /var/lib/tongban/demo --no-serve
# The whole output first: grep -q would close the pipe at its first match.
kept=$(runuser -u tongban -- tongban keys init --home /var/lib/tongban/demo)
grep -q "kept .*pseudonym.key" <<<"$kept" || fail "keys init did not keep the demo's keys: $kept"
[ "$(stat -c '%U %a' /var/lib/tongban/demo/data/pseudonym.key)" = "tongban 600" ] ||
  fail "the pseudonym key: $(stat -c '%U %a' /var/lib/tongban/demo/data/pseudonym.key)"
cd - >/dev/null

echo "== dpkg --purge tongban"
dpkg --purge tongban >/dev/null 2>&1
[ ! -e /usr/bin/tongban ] || fail "/usr/bin/tongban is still there after the purge"
[ -d /var/lib/tongban ] || fail "the purge removed the data directory (the audit log)"
echo "package check: passed"
