# bench/ports.sh: free ports and listeners on loopback, for the bench
# scripts (sourced; the caller defines die).

# free_port: sets PORT to a port in 20000-29999 (below the ephemeral
# range) that nobody uses and this script has not handed out yet.
USED_PORTS=" "
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 10000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then
			USED_PORTS+="$p "
			PORT=$p
			return 0
		fi
	done
	die "no free port found"
}

# wait_listen PORT SECONDS: until something listens on PORT.
wait_listen() {
	local port=$1 deadline=$((SECONDS + $2))
	while ((SECONDS < deadline)); do
		[[ -n $(ss -Hltn "( sport = :$port )" 2>/dev/null) ]] && return 0
		sleep 0.05
	done
	return 1
}
