#!/usr/bin/env bash
# bench/cpu-sum.sh LOG: what bench/cpu-wrap.sh logged during a
# bench/migration-ab.sh run (-a and -b wrappers that exec cpu-wrap.sh with
# MTCPU_BIN ending in -A and -B), as ms of CPU per message for each
# configuration, scenario and round, then per pair (B/A relay and seed,
# Bmap/B and Bone/B seed) the per-round ratios and their median and range.
# Messages: relay, the relay instance's status=sent; seed, half the
# primary's (each message is delivered to the Maildir and copied).
set -euo pipefail
tck=$(getconf CLK_TCK)
awk -v tck="$tck" '
$1 != "cpu" { next }
{
	bin = $2; inst = $3; t = $4 + $5; sent = $6; sub("sent=", "", sent)
	cfg = bin ~ /-A$/ ? "A" : "B"
	if ($NF == "onebox=1") cfg = "Bone"
	else if ($0 ~ /extra=dual_delivery_phase_maps/) cfg = "Bmap"
	scen = inst == "relay-mt" ? "relay" : "seed"
	k = cfg SUBSEP inst; n[k]++; r = n[k]
	ticks[cfg, scen, r] += t
	if (inst == "relay-mt") msgs[cfg, scen, r] = sent
	if (inst == "seed-mt-primary") msgs[cfg, scen, r] = sent / 2
	if (r > rounds) rounds = r
}
function ms(c, s, r) { return ((c, s, r) in msgs) && msgs[c, s, r] > 0 ? 1000 * ticks[c, s, r] / tck / msgs[c, s, r] : -1 }
function pair(lbl, s, a, b,   r, v, m, i, j, x, out, lo, hi) {
	m = 0; out = ""
	for (r = 1; r <= rounds; r++) {
		if (ms(a, s, r) < 0 || ms(b, s, r) < 0) continue
		v[++m] = ms(a, s, r) / ms(b, s, r)
		out = out (out == "" ? "" : ",") sprintf("%.3f", v[m])
	}
	if (m == 0) { print "CPU " lbl " no complete round"; return }
	for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
	printf "CPU %s rounds=%d per_round=%s median=%.3f min=%.3f max=%.3f\n", lbl, m, out, m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2, v[1], v[m]
}
END {
	printf "%-5s %8s %8s %8s %8s %9s %9s   (ms CPU per message, mailtee processes)\n", "round", "A_relay", "B_relay", "A_seed", "B_seed", "Bmap_seed", "Bone_seed"
	for (r = 1; r <= rounds; r++)
		printf "%-5d %8.3f %8.3f %8.3f %8.3f %9.3f %9.3f\n", r, ms("A", "relay", r), ms("B", "relay", r), ms("A", "seed", r), ms("B", "seed", r), ms("Bmap", "seed", r), ms("Bone", "seed", r)
	pair("relay B/A", "relay", "B", "A"); pair("seed B/A", "seed", "B", "A")
	pair("seed Bmap/B", "seed", "Bmap", "B"); pair("seed Bone/B", "seed", "Bone", "B")
}' "$1"
