package config

// Suggest returns the known parameter closest to name, for "did you mean"
// messages, or "" when nothing is close enough to be a likely typo.
func Suggest(name string) string {
	best, bestD := "", len(name)/3+1
	if bestD > 3 {
		bestD = 3
	}
	for k := range defaults {
		if d := distance(name, k, bestD); d < bestD || d == bestD && best != "" && k < best {
			best, bestD = k, d
		}
	}
	return best
}

// nearestWord returns the word of words closest to w, or "" when none is
// close enough to be a likely typo.
func nearestWord(w string, words []string) string {
	best, bestD := "", min(len(w)/3+1, 3)
	for _, k := range words {
		if d := distance(w, k, bestD); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the optimal string alignment (Damerau-Levenshtein) distance,
// giving up once every path exceeds limit.
func distance(a, b string, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
			rowMin = min(rowMin, v)
		}
		if rowMin > limit {
			return limit + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
