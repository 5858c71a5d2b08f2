//go:build race

package dissect

// raceAllocSlack is the extra allocations a call may make under the race
// detector, where sync.Pool drops what is put into it at random: fmt's
// printer cache (used by the wrapped errors) then misses now and again.
const raceAllocSlack = 2
