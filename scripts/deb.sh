#!/bin/sh
# Builds the Debian package with dpkg-deb: bin/uplinkd (built by `make
# build`), the unit, the iproute2 protocol name, the hook, the docs and
# examples, and a default policy that is a conffile (dpkg keeps an edited
# one across upgrades). No maintainer scripts: a routing daemon must not
# start on an example policy, so the unit is installed but not enabled.
#
# Usage: [BIN=path] scripts/deb.sh OUTDIR [VERSION]   (from the repository root)
set -eu

out=$1
version=${2:-}
if [ -z "$version" ]; then
	# A tag v1.2.3 gives 1.2.3; otherwise 0~gitYYYYMMDD.SHA, which sorts
	# below any release.
	if tag=$(git describe --tags --exact-match 2>/dev/null); then
		version=${tag#v}
	else
		version="0~git$(git log -1 --format=%cd --date=format:%Y%m%d).$(git rev-parse --short=12 HEAD)"
	fi
fi
case $version in
[0-9]*) ;;
*) echo "deb: version $version does not start with a digit" >&2; exit 2 ;;
esac
arch=$(dpkg --print-architecture)
policy=${EXAMPLE_POLICY:-contrib/examples/router-two-isps.toml}

bin=${BIN:-bin/uplinkd}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
umask 022
doc=$root/usr/share/doc/uplinkd

install -D -m 0755 "$bin" "$root/usr/sbin/uplinkd"
install -d "$root/lib/systemd/system"
sed 's|/usr/local/sbin/uplinkd|/usr/sbin/uplinkd|g' contrib/systemd/uplinkd.service >"$root/lib/systemd/system/uplinkd.service"
chmod 0644 "$root/lib/systemd/system/uplinkd.service"
install -D -m 0644 contrib/iproute2/rt_protos.d/uplinkd.conf "$root/etc/iproute2/rt_protos.d/uplinkd.conf"
install -D -m 0644 "$policy" "$root/etc/uplinkd/uplinkd.toml"
install -D -m 0755 contrib/examples/hooks/move-address "$root/usr/lib/uplinkd/hooks/move-address"
install -d "$doc/examples" "$doc/prometheus" "$doc/grafana" "$root/usr/share/man/man8"
install -m 0644 docs/*.md "$doc/"
install -m 0644 README.md "$doc/README.md"
install -m 0644 contrib/examples/*.toml contrib/examples/keepalived.conf "$doc/examples/"
install -m 0644 contrib/iproute2/rt_tables.d/uplinkd.conf "$doc/examples/rt_tables.d-uplinkd.conf"
install -m 0644 contrib/prometheus/alerts.yml "$doc/prometheus/"
install -m 0644 contrib/grafana/uplinkd.json "$doc/grafana/"
install -m 0644 contrib/debian/copyright "$doc/copyright"
gzip -9n <contrib/debian/uplinkd.8 >"$root/usr/share/man/man8/uplinkd.8.gz"
chmod 0644 "$root/usr/share/man/man8/uplinkd.8.gz"
# Debian wants larger docs compressed; the changelog always is (a native
# package: changelog.gz, no .Debian).
for f in "$doc"/*.md; do
	[ "$(wc -c <"$f")" -gt 4096 ] && gzip -9n "$f"
done
date=$(git log -1 --format=%cD)
printf 'uplinkd (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- uplinkd developers <uplinkd@example.org>  %s\n' \
	"$version" "$(git rev-parse HEAD)" "$date" | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
install -D -m 0644 contrib/debian/lintian-overrides "$root/usr/share/lintian/overrides/uplinkd"

install -d "$root/DEBIAN"
printf '/etc/iproute2/rt_protos.d/uplinkd.conf\n/etc/uplinkd/uplinkd.toml\n' >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" contrib/debian/control.in >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/uplinkd_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
