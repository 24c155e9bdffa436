#!/bin/sh
# Installs what a fresh Debian machine lacks to build, demo and test uplinkd.
# Idempotent: it asks apt only for packages that are missing.
# Nothing here touches the root network namespace.
set -eu

need=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/lib/frr/$1" ]; }
for pair in make:make ip:iproute2 ping:ping:iputils-ping arping:iputils-arping nft:nftables iptables:iptables \
            ethtool:ethtool zebra:frr keepalived:keepalived promtool:prometheus \
            systemd-analyze:systemd setpriv:util-linux lintian:lintian dpkg-deb:dpkg dnsmasq:dnsmasq-base busybox:busybox radvd:radvd pppd:ppp pppoe-server:pppoe ps:procps tcpdump:tcpdump git:git gcc:gcc curl:curl; do
	cmd=${pair%%:*}
	pkg=${pair##*:}
	have "$cmd" || need="$need $pkg"
done
if [ -n "$need" ]; then
	echo "setup: installing$need"
	export DEBIAN_FRONTEND=noninteractive
	# Services from these packages must not start on the host: uplinkd's
	# tests start their own FRR/keepalived/dnsmasq/radvd/pppoe-server/pppd inside throwaway
	# namespaces, with private pid, lease and config paths.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

# Go: the machine image ships it in /usr/local/go; fall back to Debian's,
# letting the toolchain directive fetch the exact version through the
# module proxy.
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "setup: installing golang-go"
	apt-get install -y -qq golang-go >/dev/null
fi
export PATH="$PATH:/usr/local/go/bin"
go mod download
echo "setup: ok ($(go version))"
