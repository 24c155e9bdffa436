#!/bin/sh
# Captures the BFD packets under bfd/testdata from real peers: FRR's bfdd
# (no authentication, single hop and multihop) and BIRD (keyed SHA1 and
# meticulous keyed SHA1, which FRR 8.4 does not implement). Run as root; it
# builds two namespaces of its own (random "upl" prefix, veth only,
# 198.18.0.0/15), never touches the root namespace, and removes everything
# it made on exit. Every daemon's pid, vty and control socket lives in a
# temporary directory, never under /run or /etc. Needs frr, tcpdump and
# bird2 (`apt-get install bird2`, with services kept from starting as
# scripts/setup.sh does): setup.sh does not install bird2 because no test
# runs BIRD; the captures are committed and the tests read them.
set -eu
out=$(cd "$(dirname "$0")" && pwd)
p=upl$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
a=$p-bfda b=$p-bfdb
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=""
cleanup() {
	for pid in $pids; do kill "$pid" 2>/dev/null || true; done
	sleep 0.3
	ip netns del "$a" 2>/dev/null || true
	ip netns del "$b" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
ip netns add "$a"; ip netns add "$b"
ip -n "$a" link set lo up; ip -n "$b" link set lo up
ip -n "$a" link add eth0 type veth peer name eth0 netns "$b"
ip -n "$a" addr add 198.18.1.1/24 dev eth0; ip -n "$b" addr add 198.18.1.2/24 dev eth0
ip -n "$a" addr add 198.18.100.1/32 dev lo; ip -n "$b" addr add 198.18.100.2/32 dev lo
ip -n "$a" link set eth0 up; ip -n "$b" link set eth0 up
ip -n "$a" route add 198.18.100.2/32 via 198.18.1.2; ip -n "$b" route add 198.18.100.1/32 via 198.18.1.1

frr() { # ns name conf
	d=$tmp/frr-$2; mkdir -p "$d"; chmod 777 "$d"; printf '%s\n' "$3" >"$d/frr.conf"
	ip netns exec "$1" /usr/lib/frr/zebra -i "$d/zebra.pid" -f "$d/frr.conf" -z "$d/zserv.api" --vty_socket "$d" -P 0 --log stdout >"$d/zebra.log" 2>&1 &
	pids="$pids $!"; sleep 0.5
	ip netns exec "$1" /usr/lib/frr/bfdd -i "$d/bfdd.pid" -f "$d/frr.conf" -z "$d/zserv.api" --vty_socket "$d" --bfdctl "$d/bfdd.sock" -P 0 --log stdout >"$d/bfdd.log" 2>&1 &
	pids="$pids $!"
}
bird() { # ns name conf
	d=$tmp/bird-$2; mkdir -p "$d"; printf '%s\n' "$3" >"$d/bird.conf"
	ip netns exec "$1" bird -f -c "$d/bird.conf" -s "$d/bird.ctl" -P "$d/bird.pid" >"$d/bird.log" 2>&1 &
	pids="$pids $!"
}
cap() { # file seconds filter
	ip netns exec "$b" timeout "$2" tcpdump -i eth0 -U -s 0 -w "$out/$1" "$3" >/dev/null 2>&1 || true
}

frrconf() { # name local peer multihop
	mh=""; [ "$4" = yes ] && mh=" multihop"
	iface=" interface eth0"; [ "$4" = yes ] && iface=""
	printf 'hostname %s\n!\nbfd\n peer %s local-address %s%s%s\n  receive-interval 50\n  transmit-interval 50\n  detect-multiplier 3\n !\n!\n' "$1" "$3" "$2" "$mh" "$iface"
}
# FRR <-> FRR, single hop: the capture starts before b's bfdd so the
# Down/Init/Up handshake and the poll that brings the timers down are in it.
frr "$a" a "$(frrconf a 198.18.1.1 198.18.1.2 no)"
cap frr-singlehop.pcap 6 "udp port 3784" &
capid=$!; sleep 1
frr "$b" b "$(frrconf b 198.18.1.2 198.18.1.1 no)"
wait $capid
for pid in $pids; do kill "$pid" 2>/dev/null || true; done; pids=""; sleep 0.5

# FRR <-> FRR, multihop between loopbacks.
frr "$a" ma "$(frrconf ma 198.18.100.1 198.18.100.2 yes)"
cap frr-multihop.pcap 6 "udp port 4784" &
capid=$!; sleep 1
frr "$b" mb "$(frrconf mb 198.18.100.2 198.18.100.1 yes)"
wait $capid
for pid in $pids; do kill "$pid" 2>/dev/null || true; done; pids=""; sleep 0.5

birdconf() { # router-id neighbor auth
	printf 'router id %s;\nprotocol device {}\nprotocol bfd {\n interface "eth0" {\n  min rx interval 50 ms; min tx interval 50 ms; idle tx interval 1 s; multiplier 3;\n  authentication %s;\n  password "uplinkd-test-key" { id 7; };\n };\n neighbor %s;\n}\n' "$1" "$3" "$2"
}
for auth in keyed-sha1 meticulous-keyed-sha1; do
	kw=$(echo "$auth" | tr - " ")
	bird "$a" "a-$auth" "$(birdconf 198.18.1.1 198.18.1.2 "$kw")"
	cap "bird-$auth.pcap" 5 "udp port 3784" &
	capid=$!; sleep 1
	bird "$b" "b-$auth" "$(birdconf 198.18.1.2 198.18.1.1 "$kw")"
	wait $capid
	for pid in $pids; do kill "$pid" 2>/dev/null || true; done; pids=""; sleep 0.5
done
ls -l "$out"/*.pcap
