//go:build race

package spool

// raceAllocPerByte is what allocBound adds under the race detector, which pads every
// allocation of under 16 bytes to 16: a distinct two-byte string, 3 bytes of payload,
// costs 14 bytes more than in a normal build.
const raceAllocPerByte = 6
