//go:build !race

package agent

// raceDetector is 1 when the tests run under the race detector, whose
// shadow memory counts in the resident set.
const raceDetector = 0
