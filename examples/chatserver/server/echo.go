package server

import (
	"unicode"
	"unicode/utf8"
)

// echoGram is the n-gram length of the echo check.
const echoGram = 4

// maxEchoWords bounds how many words of each text the echo check reads;
// the beginning of a long reply is where an echo shows.
const maxEchoWords = 256

// echoOverlap returns the fraction of the user's word 4-grams that the reply
// repeats: 0 when the reply shares none, 1 when it repeats the whole
// message. A message shorter than four words cannot be echoed in this sense
// and scores 0. Case and punctuation are ignored. It runs on every turn, so
// it compares hashes of words and 4-grams and does not allocate.
func echoOverlap(user, reply string) float64 {
	var ub, rb [maxEchoWords]uint64
	u := wordHashes(user, ub[:0])
	if len(u) < echoGram {
		return 0
	}
	r := wordHashes(reply, rb[:0])
	// Each text's 4-grams, hashed in place over its word hashes.
	u, r = gramHashes(u), gramHashes(r)
	hits := 0
	for _, g := range u {
		for _, h := range r {
			if g == h {
				hits++
				break
			}
		}
	}
	return float64(hits) / float64(len(u))
}

// wordHashes appends to dst the FNV-1a hash of each lower-cased word of s
// (runs of letters and digits), up to cap(dst) words.
func wordHashes(s string, dst []uint64) []uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h, in := uint64(offset), false
	for i := 0; i <= len(s); {
		r, size := utf8.RuneError, 1
		if i < len(s) {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if i < len(s) && (unicode.IsLetter(r) || unicode.IsNumber(r)) {
			h = (h ^ uint64(unicode.ToLower(r))) * prime
			in = true
		} else if in {
			if len(dst) == cap(dst) {
				break
			}
			dst = append(dst, h)
			h, in = offset, false
		}
		i += size
	}
	return dst
}

// gramHashes replaces words with the hashes of their consecutive 4-grams
// and returns them; there are len(words)-3 of them.
func gramHashes(words []uint64) []uint64 {
	if len(words) < echoGram {
		return words[:0]
	}
	for i := range len(words) - echoGram + 1 {
		h := uint64(0)
		for _, w := range words[i : i+echoGram] {
			h = (h ^ w) * 0x100000001b3
			h ^= h >> 29
		}
		words[i] = h
	}
	return words[:len(words)-echoGram+1]
}
