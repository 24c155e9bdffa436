package policy

import (
	"reflect"
	"slices"
	"strings"
)

// knownKeys lists the keys a policy may write under parent (a key path
// such as ["gateway", "isp1", "probe"]), from the toml tags of the raw
// types that decode it, so a suggestion can never name a key that does not
// exist. Names of objects (the "isp1") are map keys and skipped.
func knownKeys(parent []string) []string {
	t := reflect.TypeFor[rawFile]()
	for i := 0; i < len(parent); i++ {
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem() // parent[i] is an object's name
			continue
		case reflect.Struct:
			f, ok := fieldByTag(t, parent[i])
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" {
			keys = append(keys, tag)
		}
	}
	return keys
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); name == tag {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// closest returns the candidate nearest to s by edit distance (with
// transpositions, so "wieght" is one edit from "weight"), if it is near
// enough to be a typo: at most 2 edits and fewer than half of s.
func closest(s string, candidates []string) (string, bool) {
	best, bestD := "", 3
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), c)
		if d < bestD || d == bestD && c < best {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > 2 || 2*bestD >= len(s) {
		return "", false
	}
	return best, true
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and adjacent transpositions.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, slices.Clone(prev2)
	}
	return prev[len(rb)]
}

// didYouMean is the suffix of an unknown-key message: `; did you mean
// "weight"?`, or "" when nothing is close.
func didYouMean(key string, candidates []string, quote func(string) string) string {
	if c, ok := closest(key, candidates); ok {
		return "; did you mean " + quote(c) + "?"
	}
	return ""
}
