//go:build race

package proxy

// raceEnabled is true under the race detector, where allocation counts
// differ (sync.Pool drops items on purpose).
const raceEnabled = true
