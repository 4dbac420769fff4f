package server

import (
	"strings"
	"unicode"
)

// echoGram is the n-gram length of the echo check.
const echoGram = 4

// echoOverlap returns the fraction of the user's word 4-grams that the reply
// repeats: 0 when the reply shares none, 1 when it repeats the whole
// message. A message shorter than four words cannot be echoed in this sense
// and scores 0. Case and punctuation are ignored.
func echoOverlap(user, reply string) float64 {
	u := words(user)
	if len(u) < echoGram {
		return 0
	}
	r := words(reply)
	inReply := make(map[string]struct{}, len(r))
	for i := 0; i+echoGram <= len(r); i++ {
		inReply[strings.Join(r[i:i+echoGram], " ")] = struct{}{}
	}
	var hits, total int
	for i := 0; i+echoGram <= len(u); i++ {
		total++
		if _, ok := inReply[strings.Join(u[i:i+echoGram], " ")]; ok {
			hits++
		}
	}
	return float64(hits) / float64(total)
}

// words splits s into lower-case words, dropping punctuation.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r)
	})
}
